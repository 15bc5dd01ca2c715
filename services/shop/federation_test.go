package shop_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

// TestFederation: a caller from partner.example is refused at the TLS layer
// until partner.example's bundle is added to the federation directory of
// the running mesh; then it is authorized by policy like anyone else.
func TestFederation(t *testing.T) {
	t.Parallel()
	fedDir := t.TempDir()
	original, err := os.ReadFile(filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, append(original, []byte(`
  - name: partner-lists-products
    effect: allow
    from: ["spiffe://partner.example"]
    to: ["/shop.gateway.v1.StorefrontService/ListProducts"]
`)...), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, func(c *shop.Config) { c.PolicyFile, c.FederationDir = policyFile, fedDir })

	partner, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("partner.example"))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := partner.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://partner.example/ns/partner/sa/client")})
	if err != nil {
		t.Fatal(err)
	}
	shopBundle, err := certs.LoadBundle(filepath.Join(m.CertDir, "bundle.pem"), shop.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(m.Addrs[shop.Gateway], mesh.Credentials{SVID: svid, Bundles: shopBundle}, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := gatewayv1.NewStorefrontServiceClient(conn)
	list := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.ListProducts(ctx, &gatewayv1.ListProductsRequest{})
		return err
	}

	if err := list(); codeOf(err) != codes.Unavailable {
		t.Fatalf("partner before federation: %v, want Unavailable (refused at the handshake)", err)
	}

	pem, err := partner.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fedDir, "partner.example.pem"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for err := list(); err != nil; err = list() {
		if time.Now().After(deadline) {
			t.Fatalf("partner after federation: %v, want allowed by partner-lists-products", err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for the bundle directory to be reloaded, bounded
	}
	_, err = client.PlaceOrder(context.Background(), &gatewayv1.PlaceOrderRequest{CustomerId: "p",
		Items: []*gatewayv1.CartItem{{ProductId: "sku-fig", Quantity: 1}}})
	if codeOf(err) != codes.PermissionDenied {
		t.Errorf("partner PlaceOrder: %v, want PermissionDenied (no rule allows it)", err)
	}
}
