package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/txn"
)

// losingSVIDs is the edge's SVID source, which fails once lost is set.
type losingSVIDs struct {
	svid *x509svid.SVID
	lost atomic.Bool
}

func (s *losingSVIDs) GetX509SVID() (*x509svid.SVID, error) {
	if s.lost.Load() {
		return nil, errors.New("SVID withdrawn")
	}
	return s.svid, nil
}

// TestMintFailureIsAuditedAndRefused: at an edge whose minter fails, a
// call the policy lets through is refused as Unavailable, the server logs
// why, and the decision is still audited (it was not, on either path: the
// call ended before its audit), with telemetry and without.
func TestMintFailureIsAuditedAndRefused(t *testing.T) {
	t.Parallel()
	for _, traced := range []bool{false, true} {
		t.Run(map[bool]string{false: "untraced", true: "traced"}[traced], func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "shop.example")
			edge := &losingSVIDs{svid: pki.SVID(t, gatewayID)}
			minter, err := txn.NewMinter(edge, pki.TrustDomain())
			if err != nil {
				t.Fatal(err)
			}
			e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
				{Name: "users-check-health", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{healthCheck}},
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
			if traced {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
				opts = append(opts, mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tp, Propagator: telemetry.W3C()}))
			}
			srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveOn(t, srv.Serve)
			conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, aliceID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(gatewayID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			edge.lost.Store(true)
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
		})
	}
}
