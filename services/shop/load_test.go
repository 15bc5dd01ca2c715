//go:build load

package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// ghzReport is the part of ghz's JSON report the load test reads.
type ghzReport struct {
	Count             int64            `json:"count"`
	Rps               float64          `json:"rps"`
	Average           time.Duration    `json:"average"`
	ErrorDistribution map[string]int64 `json:"errorDistribution"`
	StatusCodeDist    map[string]int64 `json:"statusCodeDistribution"`
	LatencyDist       []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

func (r ghzReport) percentile(p int) time.Duration {
	for _, l := range r.LatencyDist {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

// TestLoad drives the full mesh with the real ghz, as alice through the
// gateway: LOAD_REQUESTS (default 100,000) calls of ListProducts and of
// PlaceOrder at a fixed concurrency, while, during the ListProducts run,
// every workload SVID is rotated 10 times and the policy file is rewritten
// 10 times (half of them bad). Every call must succeed. Run it with
// `make test-load`; it prints the figures BENCHMARKS.md records.
func TestLoad(t *testing.T) {
	requests := envInt(t, "LOAD_REQUESTS", 100_000)
	concurrency := envInt(t, "LOAD_CONCURRENCY", 50)
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy := func(content string) {
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Error(err)
			return
		}
		if err := os.Rename(tmp, policyFile); err != nil {
			t.Error(err)
		}
	}
	writePolicy(string(original))
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := shop.Start(ctx, shop.Config{CertDir: dir, Addrs: addrs, PolicyFile: policyFile,
		Stock: int64(10 * requests), PaymentLimit: 1 << 40, StepInterval: time.Hour, AuditAllows: 0})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := m.Wait(); err != nil {
			t.Errorf("mesh stopped with: %v", err)
		}
	})

	ghz := func(call, data string) ghzReport {
		t.Helper()
		_, port, _ := strings.Cut(m.Addrs[shop.Gateway], ":")
		args := []string{"--cacert", filepath.Join(dir, "bundle.pem"), "--cert", filepath.Join(dir, "alice.pem"),
			"--key", filepath.Join(dir, "alice-key.pem"), "--call", call, "-d", data,
			"-n", fmt.Sprint(requests), "-c", fmt.Sprint(concurrency), "--connections", "4", "-t", "10s",
			"-O", "json", "localhost:" + port}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, testtool.Path(t, "ghz"), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("ghz %s: %v\n%s", call, err, stderr.String())
		}
		var r ghzReport
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("ghz report: %v", err)
		}
		fmt.Printf("load: %-50s n=%d c=%d rps=%.0f p50=%v p99=%v errors=%v statuses=%v\n",
			call, r.Count, concurrency, r.Rps, r.percentile(50), r.percentile(99), r.ErrorDistribution, r.StatusCodeDist)
		if r.Count != int64(requests) || len(r.ErrorDistribution) != 0 || r.StatusCodeDist["OK"] != int64(requests) {
			t.Errorf("%s: %d calls, errors %v, statuses %v; want %d OK and no errors", call, r.Count, r.ErrorDistribution, r.StatusCodeDist, requests)
		}
		return r
	}

	// Rotations and reloads while ListProducts runs. Each bad file, were it
	// applied, would deny alice everything: it must change no decision.
	bad := `version: 1
rules:
  - name: deny-alice
    effect: deny
    from: ["spiffe://shop.example/user/alice"]
    to: ["*"]
  - name: deny-alice
    effect: deny
    from: ["spiffe://shop.example/user/alice"]
    to: ["*"]
`
	var (
		wg      sync.WaitGroup
		changes atomic.Int32
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 10 {
			time.Sleep(100 * time.Millisecond) // spread over the run; bounded: 10 rounds
			if _, err := certs.Rotate(dir, shop.Services, certs.RotateOptions{}); err != nil {
				t.Errorf("rotation %d: %v", i+1, err)
			}
			if i%2 == 0 {
				writePolicy(bad)
			} else {
				writePolicy(string(original) + fmt.Sprintf("\n# reload %d\n", i))
			}
			changes.Add(1)
		}
	}()
	ghz("shop.gateway.v1.StorefrontService.ListProducts", "{}")
	if n := changes.Load(); n < 10 {
		t.Errorf("ghz finished after only %d of 10 rotations and reloads; raise LOAD_REQUESTS", n)
	}
	wg.Wait()
	fmt.Println("load: 10 SVID rotations and 10 policy reloads (5 bad) ran during ListProducts")
	writePolicy(string(original))
	ghz("shop.gateway.v1.StorefrontService.PlaceOrder", `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":1}]}`)
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}
