package interceptors_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

const healthCheck = "/grpc.health.v1.Health/Check"

// TestTokensThroughTheMesh runs cert-bound tokens end to end over mutual
// TLS on loopback, on a connect-go server (request gate) and a grpc-go
// server (tap): alice's token passes with alice's certificate; the same
// token presented by bob over his own connection, and no token at all, get
// Unauthenticated.
func TestTokensThroughTheMesh(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	f := newTokenFixture(t)
	// The fixture's users have certificates from another CA: give alice and
	// bob SVIDs from this PKI and bind the token to alice's.
	aliceSVID, bobSVID := pki.SVID(t, aliceID), pki.SVID(t, bobID)
	alice := mesh.Credentials{SVID: aliceSVID, Bundles: pki.Bundle()}
	bob := mesh.Credentials{SVID: bobSVID, Bundles: pki.Bundle()}
	aliceToken := f.token(t, aliceSVID.Certificates[0], 15*time.Minute, time.Now())

	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-check-health-with-token", Effect: policy.Allow, RequireToken: true,
			From: []string{"spiffe://shop.example/user/*"}, To: []string{healthCheck}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e, interceptors.WithTokenVerifier(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	server := mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}
	serverID := spiffeid.RequireFromString(gatewayID)
	opts := []mesh.ServerOption{mesh.WithAuthorizer(a), mesh.WithCoverageWarnings()}

	stacks := []struct {
		name string
		addr func(t *testing.T) string
		call func(t *testing.T, addr string, creds mesh.Credentials, token string) error
		code func(error) codes.Code
		msg  func(error) string
	}{
		{"connect-go", func(t *testing.T) string {
			srv, err := mesh.NewConnectServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return serveOn(t, srv.Serve)
		}, func(t *testing.T, addr string, creds mesh.Credentials, token string) error {
			hc, err := mesh.NewHTTPClient(creds, serverID)
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, "https://"+addr+healthCheck)
			req := connect.NewRequest(&healthpb.HealthCheckRequest{})
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = client.CallUnary(ctx, req)
			return err
		}, func(err error) codes.Code {
			if err == nil {
				return codes.OK
			}
			return codes.Code(connect.CodeOf(err))
		},
			func(err error) string {
				var ce *connect.Error
				if errors.As(err, &ce) {
					return ce.Message()
				}
				return err.Error()
			}},
		{"grpc-go", func(t *testing.T) string {
			srv, err := mesh.NewGRPCServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return serveOn(t, srv.Serve)
		}, func(t *testing.T, addr string, creds mesh.Credentials, token string) error {
			conn, err := mesh.DialGRPC(addr, creds, serverID)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
			}
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}, status.Code, func(err error) string { return status.Convert(err).Message() }},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			addr := st.addr(t)
			testCases := []struct {
				name  string
				creds mesh.Credentials
				token string
				code  codes.Code
				msg   string
			}{
				{"alice with her token", alice, aliceToken, codes.OK, ""},
				{"bob replays alice's token", bob, aliceToken, codes.Unauthenticated, "invalid token: token is bound to another certificate"},
				{"alice without a token", alice, "", codes.Unauthenticated, "token required for " + healthCheck},
			}
			for _, tc := range testCases {
				err := st.call(t, addr, tc.creds, tc.token)
				if got := st.code(err); got != tc.code || (err != nil && st.msg(err) != tc.msg) {
					t.Errorf("%s: %v (%v), want %v %q", tc.name, got, err, tc.code, tc.msg)
				}
			}
		})
	}
}

func serveOn(t *testing.T, fn func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
