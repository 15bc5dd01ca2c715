package mesh_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestRateLimit: with bursts of 3 and a negligible refill, a caller's
// fourth call is refused with ResourceExhausted on both stacks, and other
// callers are not affected.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	serverCreds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	gateway := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	other := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/ns/shop/sa/orders"), Bundles: pki.Bundle()}
	const want = "spiffe://shop.example/ns/shop/sa/gateway is over its rate limit of 0.001 calls per second"
	stacks := []struct {
		name  string
		serve func(opts ...mesh.ServerOption) string
		check func(*testing.T, string, mesh.Credentials, string) error
		code  func(error) codes.Code
	}{
		{"grpc-go", func(opts ...mesh.ServerOption) string {
			srv, err := mesh.NewGRPCServer(serverCreds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		}, grpcCheck, status.Code},
		{"connect-go", func(opts ...mesh.ServerOption) string {
			srv, err := mesh.NewConnectServer(serverCreds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		}, connectCheck, func(err error) codes.Code { return codes.Code(connect.CodeOf(err)) }},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			l, err := interceptors.NewRateLimiter(0.001, 3)
			if err != nil {
				t.Fatal(err)
			}
			addr := st.serve(mesh.WithoutAuthorization(), mesh.WithRateLimiter(l))
			for i := range 3 {
				if err := st.check(t, addr, gateway, serverID); err != nil {
					t.Fatalf("call %d within the burst: %v", i+1, err)
				}
			}
			err = st.check(t, addr, gateway, serverID)
			if got := st.code(err); got != codes.ResourceExhausted {
				t.Fatalf("call over the limit: code %v (%v), want ResourceExhausted", got, err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			// Every path the server answers is limited, known or not.
			if err := callUnknown(t, addr, gateway); connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("unknown procedure over the limit: %v, want resource_exhausted", err)
			}
			if err := st.check(t, addr, other, serverID); err != nil {
				t.Errorf("another caller was limited too: %v", err)
			}
		})
	}
}

// callUnknown calls a procedure no server serves, over gRPC.
func callUnknown(t *testing.T, addr string, creds mesh.Credentials) error {
	t.Helper()
	hc, err := mesh.NewHTTPClient(creds, spiffeid.RequireFromString(serverID))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
		"https://"+addr+"/no.such.Service/Method", connect.WithGRPC())
	_, err = client.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
	return err
}
