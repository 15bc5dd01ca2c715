package shop_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// TestPaymentsDown stops payments under a running mesh: PlaceOrder fails
// fast with Unavailable (well within its deadline) and the reservation is
// released; when payments comes back on the same address, orders succeed
// again without restarting anything else.
func TestPaymentsDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	lns := map[string]net.Listener{}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[s], addrs[s] = ln, ln.Addr().String()
	}
	cfg := shop.Config{CertDir: dir, Addrs: addrs, StepInterval: time.Hour,
		PolicyFile: filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")}
	serve := func(name string, ln net.Listener) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- shop.Serve(ctx, name, ln, cfg) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	stops := map[string]func(){}
	for _, s := range shop.Services {
		stops[s] = serve(s, lns[s])
	}
	t.Cleanup(func() {
		for _, s := range shop.Services {
			if stop := stops[s]; stop != nil {
				stop()
			}
		}
	})
	m := &shop.Mesh{Addrs: addrs, CertDir: dir}
	client := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "alice", shop.Gateway))
	place := func(timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		_, err := client.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice",
			Items: []*gatewayv1.CartItem{{ProductId: "sku-fig", Quantity: 2}}})
		return time.Since(start), err
	}
	stock := func() int64 {
		t.Helper()
		resp, err := client.ListProducts(context.Background(), &gatewayv1.ListProductsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetProducts() {
			if p.GetId() == "sku-fig" {
				return p.GetAvailableQuantity()
			}
		}
		t.Fatal("no sku-fig in the catalogue")
		return 0
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the mesh to serve", func() bool { _, err := place(5 * time.Second); return err == nil })

	before := stock()
	stops[shop.Payments]()
	stops[shop.Payments] = nil

	elapsed, err := place(5 * time.Second)
	if codeOf(err) != codes.Unavailable {
		t.Fatalf("PlaceOrder with payments down: %v, want Unavailable", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("PlaceOrder took %v to fail; want it to fail fast, well within its 5s deadline", elapsed)
	}
	if after := stock(); after != before {
		t.Errorf("sku-fig stock %d after the failed order, want %d: the reservation was not released", after, before)
	}

	ln, err := net.Listen("tcp", addrs[shop.Payments])
	if err != nil {
		t.Fatalf("rebind payments on %s: %v", addrs[shop.Payments], err)
	}
	stops[shop.Payments] = serve(shop.Payments, ln)
	waitFor("orders to succeed again", func() bool { _, err := place(5 * time.Second); return err == nil })
	if after := stock(); after != before-2 {
		t.Errorf("sku-fig stock %d after one good order, want %d", after, before-2)
	}
}
