package mesh_test

import (
	"context"
	"log/slog"
	"strings"
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

// healthPolicy lets the gateway check health and denies everyone else.
func healthPolicy(t *testing.T, dryRun bool) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(policy.Policy{DryRun: dryRun, Rules: []policy.Rule{
		{Name: "gateway-checks-health", Effect: policy.Allow, From: []string{clientID}, To: []string{"/grpc.health.v1.Health/*"}},
		{Name: "reflection", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/ops/sa/admin"},
			To: []string{"/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	serverCreds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	gateway := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	alice := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/user/alice"), Bundles: pki.Bundle()}

	stacks := []struct {
		name  string
		start func(t *testing.T, opts ...mesh.ServerOption) string
		check func(*testing.T, string, mesh.Credentials, string) error
		code  func(error) codes.Code
	}{
		{"grpc-go", func(t *testing.T, opts ...mesh.ServerOption) string {
			srv, err := mesh.NewGRPCServer(serverCreds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		}, grpcCheck, status.Code},
		{"connect-go", func(t *testing.T, opts ...mesh.ServerOption) string {
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
			var audit testsync.Buffer
			a, err := interceptors.NewAuthorizer(healthPolicy(t, false),
				interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&audit, nil))))
			if err != nil {
				t.Fatal(err)
			}
			addr := st.start(t, mesh.WithAuthorizer(a))
			if err := st.check(t, addr, gateway, serverID); err != nil {
				t.Fatalf("allowed call: %v", err)
			}
			err = st.check(t, addr, alice, serverID)
			if got := st.code(err); got != codes.PermissionDenied {
				t.Fatalf("denied call: code = %v (%v), want PermissionDenied", got, err)
			}
			want := "spiffe://shop.example/user/alice may not call /grpc.health.v1.Health/Check"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("denied call error %q does not say %q", err, want)
			}
			if strings.Contains(err.Error(), "gateway-checks-health") || strings.Contains(err.Error(), "default-deny") {
				t.Errorf("denied call error %q leaks the policy", err)
			}
			log := audit.String()
			for _, part := range []string{`caller=spiffe://shop.example/user/alice`, `method=/grpc.health.v1.Health/Check`, `decision=deny`, `rule=default-deny`, `dry_run=false`} {
				if !strings.Contains(log, part) {
					t.Errorf("audit log lacks %q:\n%s", part, log)
				}
			}
		})
		t.Run(st.name+"/dry-run", func(t *testing.T) {
			t.Parallel()
			var audit testsync.Buffer
			a, err := interceptors.NewAuthorizer(healthPolicy(t, true),
				interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&audit, nil))))
			if err != nil {
				t.Fatal(err)
			}
			addr := st.start(t, mesh.WithAuthorizer(a))
			if err := st.check(t, addr, alice, serverID); err != nil {
				t.Fatalf("dry-run denied call failed: %v", err)
			}
			if log := audit.String(); !strings.Contains(log, "decision=dry_run_deny") || !strings.Contains(log, "dry_run=true") {
				t.Errorf("audit log lacks the dry-run denial:\n%s", log)
			}
		})
		t.Run(st.name+"/coverage", func(t *testing.T) {
			t.Parallel()
			e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
				{Name: "health-only", Effect: policy.Allow, From: []string{clientID}, To: []string{"/grpc.health.v1.Health/Check"}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			a, err := interceptors.NewAuthorizer(e)
			if err != nil {
				t.Fatal(err)
			}
			var srvErr error
			switch st.name {
			case "grpc-go":
				srv, err := mesh.NewGRPCServer(serverCreds, mesh.WithAuthorizer(a))
				if err != nil {
					t.Fatal(err)
				}
				srvErr = srv.Serve(context.Background(), listen(t))
			default:
				srv, err := mesh.NewConnectServer(serverCreds, mesh.WithAuthorizer(a))
				if err != nil {
					t.Fatal(err)
				}
				srvErr = srv.Serve(context.Background(), listen(t))
			}
			want := "mesh: no allow rule covers 3 served method(s): /grpc.health.v1.Health/Watch, /grpc.reflection.v1.ServerReflection/ServerReflectionInfo, /grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
			if st.name == "grpc-go" { // grpc-go's health service also has List
				want = "mesh: no allow rule covers 4 served method(s): /grpc.health.v1.Health/List, /grpc.health.v1.Health/Watch, /grpc.reflection.v1.ServerReflection/ServerReflectionInfo, /grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
			}
			want += " (add allow rules for them to the policy or the protos' trustmesh.v1 access options, or pass WithCoverageWarnings to serve them to no one; health and reflection are covered by merging mesh.AllowStandardMethods(callers...) into the policy, and WithoutReflection serves no reflection)"
			if srvErr == nil || srvErr.Error() != want {
				t.Errorf("Serve with an uncovering policy:\n got: %v\nwant: %s", srvErr, want)
			}
		})
	}
}

// TestTapRefusesBeforeDecode sends a request too large for the server to
// accept: a denied caller must get PermissionDenied (the tap ran before the
// body was read), not ResourceExhausted.
func TestTapRefusesBeforeDecode(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	a, err := interceptors.NewAuthorizer(healthPolicy(t, false))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}, mesh.WithAuthorizer(a))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	alice := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/user/alice"), Bundles: pki.Bundle()}
	conn, err := mesh.DialGRPC(addr, alice, spiffeid.RequireFromString(serverID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := strings.Repeat("x", 8<<20) // over the 4 MiB default receive limit
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: big})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("code = %v (%v), want PermissionDenied", status.Code(err), err)
	}
}
