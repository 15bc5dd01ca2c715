package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// startMesh runs the four services on loopback with the sample policy and a
// fresh development PKI.
func startMesh(t *testing.T) *shop.Mesh {
	t.Helper()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := shop.Start(ctx, shop.Config{CertDir: dir, Addrs: addrs,
		PolicyFile: filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")})
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
	return m
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	testCases := []struct {
		name string
		args []string
		code int
		want string // stdout on success, else the last stderr line's start
	}{
		// What each container's HEALTHCHECK runs: the service as itself.
		{"gateway-itself", []string{"--addr", m.Addrs[shop.Gateway], "--name", "gateway"}, 0, "gateway at " + m.Addrs[shop.Gateway] + ": SERVING"},
		{"orders-itself", []string{"--addr", m.Addrs[shop.Orders], "--name", "orders"}, 0, "orders at " + m.Addrs[shop.Orders] + ": SERVING"},
		{"inventory-itself", []string{"--addr", m.Addrs[shop.Inventory], "--name", "inventory"}, 0, "inventory at " + m.Addrs[shop.Inventory] + ": SERVING"},
		{"payments-itself", []string{"--addr", m.Addrs[shop.Payments], "--name", "payments"}, 0, "payments at " + m.Addrs[shop.Payments] + ": SERVING"},
		{"admin-checks-payments", []string{"--addr", m.Addrs[shop.Payments], "--name", "admin", "--server", "payments"}, 0, "payments at"},
		// The self rule gives a workload nothing on another service.
		{"inventory-checks-gateway", []string{"--addr", m.Addrs[shop.Gateway], "--name", "inventory", "--server", "gateway"}, 1,
			"shop: healthcheck: gateway at " + m.Addrs[shop.Gateway] + ": rpc error: code = PermissionDenied"},
		// The server's SPIFFE ID is checked: orders is not payments.
		{"wrong-server", []string{"--addr", m.Addrs[shop.Orders], "--name", "payments"}, 1,
			"shop: healthcheck: payments at " + m.Addrs[shop.Orders] + ": rpc error: code = Unavailable"},
		{"unknown-health-service", []string{"--addr", m.Addrs[shop.Orders], "--name", "orders", "--service", "nope"}, 1,
			"shop: healthcheck: orders at " + m.Addrs[shop.Orders] + ": rpc error: code = NotFound"},
		{"missing-svid", []string{"--addr", m.Addrs[shop.Orders], "--name", "carol", "--server", "orders"}, 1,
			"shop: carol: load SVID " + filepath.Join(m.CertDir, "carol.pem")},
		{"no-addr", []string{"--name", "orders"}, 2, "shop: healthcheck: --addr is required"},
		{"bad-addr", []string{"--addr", "nine", "--name", "orders"}, 2, `shop: --addr "nine": want host:port`},
		{"no-name", []string{"--addr", m.Addrs[shop.Orders]}, 2, "shop: healthcheck: --name is required"},
		{"user-without-server", []string{"--addr", m.Addrs[shop.Gateway], "--name", "alice"}, 2, `shop: healthcheck: unknown server "alice"`},
		{"nothing-listening", []string{"--addr", "127.0.0.1:1", "--name", "orders", "--timeout", "500ms"}, 1,
			"shop: healthcheck: orders at 127.0.0.1:1: rpc error: code = "},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"healthcheck", "--cert-dir", m.CertDir}, tc.args...)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			got := strings.TrimSpace(stdout.String())
			if tc.code != 0 {
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				got = lines[len(lines)-1]
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("output:\n got: %s\nwant: %s...", got, tc.want)
			}
		})
	}
}

// TestHealthcheckFromEnv runs the health check as the image does: no
// arguments, everything from the environment compose sets.
func TestHealthcheckFromEnv(t *testing.T) {
	m := startMesh(t)
	t.Setenv("SHOP_CERT_DIR", m.CertDir)
	t.Setenv("SHOP_HEALTHCHECK_ADDR", m.Addrs[shop.Inventory])
	t.Setenv("SHOP_HEALTHCHECK_NAME", "inventory")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code = %d, stderr: %s", code, stderr.String())
	}
	if want := "inventory at " + m.Addrs[shop.Inventory] + ": SERVING\n"; stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
}

func TestServeCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{ExtraDNSNames: []string{"orders.shop"}}); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")
	badPolicy := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badPolicy, []byte("version: 1\nrules:\n  - name: x\n    effect: perhaps\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	thinPolicy := filepath.Join(t.TempDir(), "thin.yaml")
	if err := os.WriteFile(thinPolicy, []byte("version: 1\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The sample policy and a deny rule with a misspelt service: the
	// server would refuse to start, and so must --check-config.
	sampleText, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	typoDeny := filepath.Join(t.TempDir(), "typo-deny.yaml")
	if err := os.WriteFile(typoDeny, append(sampleText, `
  - name: no-mallory-typo
    effect: deny
    from: ["spiffe://shop.example/user/mallory"]
    to: ["/shop.payments.v1.PaymentServices/*"]
`...), 0o644); err != nil {
		t.Fatal(err)
	}
	// Everything but reflection: the server would refuse to start, and so
	// must --check-config.
	noReflection := filepath.Join(t.TempDir(), "no-reflection.yaml")
	if err := os.WriteFile(noReflection, []byte(`version: 1
rules:
  - name: orders-everything-but-reflection
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/shop.payments.v1.PaymentService/*", "/grpc.health.v1.Health/*"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name  string
		args  []string
		code  int
		wants []string // lines of stdout, or the start of stderr's last line
	}{
		{"reflection-uncovered", []string{"payments", "--policy", noReflection}, 1, []string{
			"shop: payments: policy " + noReflection + ": no allow rule covers 2 served method(s): /grpc.reflection.v1.ServerReflection/ServerReflectionInfo, /grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}},
		{"orders", []string{"orders", "--orders-addr", "orders:9001", "--inventory-addr", "inventory:9002", "--payments-addr", "payments:9003", "--policy", policyFile}, 0, []string{
			"shop serve orders: configuration OK",
			"service: orders",
			"spiffe-id: spiffe://shop.example/ns/shop/sa/orders",
			"listen: :9001",
			"inventory-addr: inventory:9002",
			"payments-addr: payments:9003",
			"cert-dir: " + dir,
			"bundle: " + filepath.Join(dir, "bundle.pem"),
			"policy: " + policyFile + " (",
			"every served method has an allow rule)",
			"step-interval: service default",
		}},
		{"gateway-listen", []string{"gateway", "--listen", "0.0.0.0:8443", "--policy", policyFile}, 0, []string{"listen: 0.0.0.0:8443", "spiffe-id: spiffe://shop.example/ns/shop/sa/gateway"}},
		{"bad-listen", []string{"payments", "--listen", "9003", "--policy", policyFile}, 2, []string{`shop: --listen "9003": want host:port with a port from 0 to 65535`}},
		{"port-out-of-range", []string{"payments", "--listen", ":99999", "--policy", policyFile}, 2, []string{`shop: --listen ":99999": want host:port with a port from 0 to 65535`}},
		{"missing-federation-dir", []string{"payments", "--federation-dir", filepath.Join(dir, "no-fed"), "--policy", policyFile}, 1, []string{"shop: payments: certs: "}},
		{"missing-token-jwks", []string{"gateway", "--token-jwks", filepath.Join(dir, "typo.json"), "--policy", policyFile}, 1, []string{"shop: gateway: tokens: "}},
		{"missing-svid", []string{"orders", "--cert-dir", t.TempDir(), "--policy", policyFile}, 1, []string{"shop: orders: certs: read SVID: open "}},
		{"bad-policy", []string{"orders", "--policy", badPolicy}, 1, []string{"shop: orders: " + badPolicy + ":"}},
		{"missing-policy", []string{"orders", "--policy", filepath.Join(dir, "nope.yaml")}, 1, []string{"shop: orders: "}},
		{"uncovered", []string{"inventory", "--policy", thinPolicy}, 1, []string{"shop: inventory: policy " + thinPolicy + ": no allow rule covers"}},
		{"unused-deny", []string{"payments", "--policy", typoDeny}, 1, []string{
			"shop: payments: policy " + typoDeny + ": deny rule(s) no-mallory-typo match no method this server serves, so they refuse nothing here (a typo in their to:? a rule meant for other servers says so with at:)"}},
		{"unused-deny-allowed", []string{"payments", "--policy", typoDeny, "--allow-uncovered"}, 0, []string{"deny rules matching no served method (allowed by --allow-uncovered): no-mallory-typo"}},
		{"uncovered-allowed", []string{"inventory", "--policy", thinPolicy, "--allow-uncovered"}, 0, []string{"allow-uncovered: true", "/shop.inventory.v1.InventoryService/Restock"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve"}, tc.args[0], "--check-config", "--cert-dir", dir)
			args = append(args, tc.args[1:]...)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if tc.code != 0 {
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.wants[0]) {
					t.Errorf("last stderr line:\n got: %s\nwant: %s...", last, tc.wants[0])
				}
				return
			}
			for _, w := range tc.wants {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

// TestServeCheckConfigServesNothing makes sure --check-config returns at
// once, without binding the port.
func TestServeCheckConfigServesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"serve", "payments", "--check-config", "--cert-dir", dir, "--listen", "256.0.0.1:1",
		"--policy", filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code = %d; stderr: %s", code, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatal("--check-config did not return promptly")
	}
}
