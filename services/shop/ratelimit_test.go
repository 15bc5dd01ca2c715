package shop_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

// TestRateLimitOnAnyService: the per-caller limit can be set on a service
// other than the gateway (what `shop serve inventory --rate-limit` does),
// and then limits every path that service answers, unknown ones included.
func TestRateLimitOnAnyService(t *testing.T) {
	t.Parallel()
	m := startMesh(t, func(c *shop.Config) {
		c.RateLimit, c.RateBurst, c.RateLimited = 0.001, 2, []string{shop.Inventory}
	})
	bundle, err := certs.LoadBundle(filepath.Join(m.CertDir, "bundle.pem"), shop.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.Load(filepath.Join(m.CertDir, "admin.pem"), filepath.Join(m.CertDir, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(m.Addrs[shop.Inventory], mesh.Credentials{SVID: svid, Bundles: bundle}, shop.WorkloadID(shop.Inventory))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		if err := grpcCall(ctx, conn, "/grpc.health.v1.Health/Check"); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	for _, method := range []string{"/grpc.health.v1.Health/Check", "/no.such.Service/Method"} {
		if err := grpcCall(ctx, conn, method); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s over the limit: %v, want ResourceExhausted", method, err)
		}
	}
	// The gateway, not listed, is not limited.
	gw, err := mesh.DialGRPC(m.Addrs[shop.Gateway], mesh.Credentials{SVID: svid, Bundles: bundle}, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	for range 3 {
		if err := grpcCall(ctx, gw, "/grpc.health.v1.Health/Check"); err != nil {
			t.Fatalf("gateway health: %v", err)
		}
	}
}
