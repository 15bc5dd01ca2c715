package shop_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
)

// TestPolicyHotReload edits the policy file under a running mesh while a
// client calls in a loop: a bad file changes nothing (no call fails), a good
// change applies to new calls.
func TestPolicyHotReload(t *testing.T) {
	t.Parallel()
	original, err := os.ReadFile(filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(content string) {
		t.Helper()
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policyFile); err != nil { // how editors and ConfigMaps replace files
			t.Fatal(err)
		}
	}
	write(string(original))
	m := startMesh(t, func(c *shop.Config) { c.PolicyFile = policyFile })
	client := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "alice", shop.Gateway))
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.ListProducts(ctx, &gatewayv1.ListProductsRequest{})
		return err
	}

	// A client loop (bounded in count and time) runs through the bad edits.
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		calls    atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100_000 && !stop.Load(); i++ {
			calls.Add(1)
			if err := call(); err != nil {
				if failures.Add(1) == 1 {
					firstErr.Store(err)
				}
			}
		}
	}()
	bad := []string{
		"version: 1\nrules:\n  - name: x\n    effect: allow\n    from: [\"spiffe://shop.example/user/al*\"]\n    to: [\"*\"]\n", // partial wildcard
		"version: 2\nrules: []\n",                  // unsupported version
		string(original) + "\n  - name: [broken\n", // YAML syntax
		"", // empty file
		strings.Replace(string(original), "users-call-storefront-v1", "admin-restock-and-refund", 1), // duplicate name
	}
	for _, content := range bad {
		write(content)
		// Give the watcher time to read (and reject) it while calls go on.
		waitCalls(t, &calls, 20)
	}
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed while bad policy files were written: %v", n, calls.Load(), firstErr.Load())
	}

	// A good change: a deny rule for alice on ListProducts, at the front.
	write(strings.Replace(string(original), "rules:\n", `rules:
  - name: alice-may-not-list
    effect: deny
    from: ["spiffe://shop.example/user/alice"]
    to: ["/shop.gateway.v1.StorefrontService/ListProducts"]
`, 1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := call()
		if codeOf(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the good change never took effect: last call returned %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the reload, bounded by the deadline
	}
}

// waitCalls waits until at least n more calls have been made (bounded).
func waitCalls(t *testing.T, calls *atomic.Int64, n int64) {
	t.Helper()
	target := calls.Load() + n
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < target {
		if time.Now().After(deadline) {
			t.Fatal("the client loop stalled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
