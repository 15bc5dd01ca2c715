package interceptors_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/txn"
)

// TestMintFailureIsAuditedAndRefused: at an edge whose minter fails, a
// call the policy lets through is refused as Unavailable, the server logs
// why, and the decision is still audited (it was not, on either path: the
// call ended before its audit), with telemetry and without. Traced, the
// refused call's server span still carries its decision and ends
// UNAVAILABLE (health checks have no span: a method of a service does).
func TestMintFailureIsAuditedAndRefused(t *testing.T) {
	t.Parallel()
	for _, traced := range []bool{false, true} {
		t.Run(map[bool]string{false: "untraced", true: "traced"}[traced], func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "shop.example")
			edge := &swappable{}
			edge.p.Store(pki.SVID(t, gatewayID))
			minter, err := txn.NewMinter(edge, pki.TrustDomain())
			if err != nil {
				t.Fatal(err)
			}
			e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
				{Name: "users-check-health", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{healthCheck}},
				{Name: "users-greet", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{"/greet.v1.GreetService/*"}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			var logs testsync.Buffer
			a, err := interceptors.NewAuthorizer(e, interceptors.WithTxnMinter(minter), interceptors.WithAuditAllows(1),
				interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))))
			if err != nil {
				t.Fatal(err)
			}
			opts := []mesh.ServerOption{mesh.WithAuthorizer(a), mesh.WithCoverageWarnings()}
			rec := tracetest.NewSpanRecorder()
			if traced {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
				opts = append(opts, mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tp, Propagator: telemetry.W3C()}))
			}
			srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			greetv1.RegisterGreetServiceServer(srv, exampleGreeter{})
			addr := serveOn(t, srv.Serve)
			conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, aliceID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(gatewayID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			edge.p.Store(pki.SVID(t, gatewayID, testpki.WithNow(time.Now().Add(-48*time.Hour)))) // expired: no token can be minted
			_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "transaction token unavailable" {
				t.Fatalf("Check with the minter failing: %v, want Unavailable: transaction token unavailable", err)
			}
			out := logs.String()
			wantErr := `level=ERROR msg="authz transaction token not minted" caller=` + aliceID + ` method=` + healthCheck + ` error="interceptors: mint a transaction token: txn: `
			wantAudit := `level=INFO msg="authz decision" caller=` + aliceID + ` method=` + healthCheck + ` decision=allow rule=users-check-health dry_run=false`
			if !strings.Contains(out, wantErr) || !strings.Contains(out, wantAudit) {
				t.Fatalf("log lacks\n %s\nor\n %s\nin:\n%s", wantErr, wantAudit, out)
			}
			if !traced {
				return
			}
			_, err = greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Greet with the minter failing: %v, want Unavailable", err)
			}
			var span sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "greet.v1.GreetService/Greet" && s.SpanKind() == trace.SpanKindServer {
					span = s
				}
			}
			if span == nil {
				t.Fatal("no server span for the refused Greet")
			}
			attrs := attribute.NewSet(span.Attributes()...)
			if v, _ := attrs.Value(telemetry.AuthzDecisionKey); v.AsString() != telemetry.DecisionAllow || span.Status().Code != otelcodes.Error {
				t.Errorf("refused Greet's span: decision %q, status %v; want %s and an error status (attributes %v)", v.AsString(), span.Status(), telemetry.DecisionAllow, span.Attributes())
			}
			if v, _ := attrs.Value("rpc.response.status_code"); v.AsString() != "UNAVAILABLE" {
				t.Errorf("refused Greet's span: rpc.response.status_code %q, want UNAVAILABLE", v.AsString())
			}
		})
	}
}
