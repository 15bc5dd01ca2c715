package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

// losingSource is a policy.Source of a user's own that loses its engine
// after the authorizer is built: Engine returns nil from then on.
type losingSource struct{ e atomic.Pointer[policy.Engine] }

func (s *losingSource) Engine() *policy.Engine { return s.e.Load() }

// TestNilEngineRefusesOverTheMesh proves, over mutual TLS on loopback on a
// grpc-go server (tap) and a connect-go server (HTTP middleware), that a
// policy source whose Engine returns nil once the server runs gets every
// call refused as PermissionDenied, never let through nor a crash, and
// that the server says why in one error line, once for the outage.
func TestNilEngineRefusesOverTheMesh(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-check-health", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{healthCheck}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	alice := mesh.Credentials{SVID: pki.SVID(t, aliceID), Bundles: pki.Bundle()}
	server := mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}
	serverID := spiffeid.RequireFromString(gatewayID)
	const wantMsg = aliceID + " may not call " + healthCheck
	const wantLog = `level=ERROR msg="authz policy source has no engine: every call is refused until it has one" source=*interceptors_test.losingSource` + "\n"

	stacks := []struct {
		name  string
		serve func(t *testing.T, a *interceptors.Authorizer) string
		call  func(t *testing.T, addr string) (codes.Code, string)
	}{
		{"grpc-go", func(t *testing.T, a *interceptors.Authorizer) string {
			srv, err := mesh.NewGRPCServer(server, mesh.WithServerOptions(mesh.WithAuthorizer(a), mesh.WithCoverageWarnings()))
			if err != nil {
				t.Fatal(err)
			}
			return serveOn(t, srv.Serve)
		}, func(t *testing.T, addr string) (codes.Code, string) {
			conn, err := mesh.DialGRPC(addr, alice, serverID)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return status.Code(err), status.Convert(err).Message()
		}},
		{"connect-go", func(t *testing.T, a *interceptors.Authorizer) string {
			srv, err := mesh.NewConnectServer(server, mesh.WithServerOptions(mesh.WithAuthorizer(a), mesh.WithCoverageWarnings()))
			if err != nil {
				t.Fatal(err)
			}
			return serveOn(t, srv.Serve)
		}, func(t *testing.T, addr string) (codes.Code, string) {
			hc, err := mesh.NewHTTPClient(alice, serverID)
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, "https://"+addr+healthCheck)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = client.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
			if err == nil {
				return codes.OK, ""
			}
			var ce *connect.Error
			if !errors.As(err, &ce) {
				return codes.Unknown, err.Error()
			}
			return codes.Code(ce.Code()), ce.Message()
		}},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			src := &losingSource{}
			src.e.Store(e)
			var logs testsync.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
			a, err := interceptors.NewAuthorizer(src, interceptors.WithAuditLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			addr := st.serve(t, a)
			if code, msg := st.call(t, addr); code != codes.OK {
				t.Fatalf("with the engine: %v %q, want OK", code, msg)
			}
			src.e.Store(nil)
			for i := range 2 {
				if code, msg := st.call(t, addr); code != codes.PermissionDenied || msg != wantMsg {
					t.Errorf("call %d without an engine: %v %q, want %v %q", i, code, msg, codes.PermissionDenied, wantMsg)
				}
			}
			errorLines := func() []string {
				var lines []string
				for _, line := range strings.SplitAfter(logs.String(), "\n") {
					if strings.HasPrefix(line, "level=ERROR") {
						lines = append(lines, line)
					}
				}
				return lines
			}
			if got := errorLines(); len(got) != 1 || got[0] != wantLog {
				t.Errorf("error lines = %q, want one %q", got, wantLog)
			}
			// The engine comes back: calls pass again; lost once more, the
			// outage is reported again.
			src.e.Store(e)
			if code, msg := st.call(t, addr); code != codes.OK {
				t.Fatalf("with the engine back: %v %q, want OK", code, msg)
			}
			src.e.Store(nil)
			if code, _ := st.call(t, addr); code != codes.PermissionDenied {
				t.Errorf("without the engine again: %v, want PermissionDenied", code)
			}
			if got := errorLines(); len(got) != 2 || got[1] != wantLog {
				t.Errorf("error lines = %q, want the outage reported twice", got)
			}
			// A zero Engine (not built by Compile) denies too: it once
			// panicked in the tap and left the call hanging.
			src.e.Store(&policy.Engine{})
			if code, msg := st.call(t, addr); code != codes.PermissionDenied || msg != wantMsg {
				t.Errorf("with a zero engine: %v %q, want %v %q", code, msg, codes.PermissionDenied, wantMsg)
			}
		})
	}
}
