package mesh_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestWithTrustDomains: a caller from a trust domain whose bundle the server
// holds connects only if the domain is listed; by default only the
// server's own trust domain is.
func TestWithTrustDomains(t *testing.T) {
	t.Parallel()
	shop := testpki.New(t, "shop.example")
	partner := testpki.New(t, "partner.example")
	bundles := x509bundle.NewSet(shop.Bundle(), partner.Bundle())
	serverCreds := mesh.Credentials{SVID: shop.SVID(t, serverID), Bundles: bundles}
	caller := mesh.Credentials{SVID: partner.SVID(t, "spiffe://partner.example/ns/p/sa/client"), Bundles: shop.Bundle()}

	testCases := []struct {
		name    string
		opts    []mesh.ServerOption
		allowed bool
	}{
		{"default-own-domain-only", nil, false},
		{"partner-listed", []mesh.ServerOption{mesh.WithTrustDomains(spiffeid.RequireTrustDomainFromString("shop.example"),
			spiffeid.RequireTrustDomainFromString("partner.example"))}, true},
		{"other-domain-listed", []mesh.ServerOption{mesh.WithTrustDomains(spiffeid.RequireTrustDomainFromString("shop.example"))}, false},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, err := mesh.NewGRPCServer(serverCreds, mesh.WithServerOptions(append(tc.opts, mesh.WithoutAuthorization())...))
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, srv.Serve)
			err = grpcCheck(t, addr, caller, serverID)
			if (err == nil) != tc.allowed {
				t.Errorf("partner call: err %v, want allowed=%v", err, tc.allowed)
			}
		})
	}
}
