package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// withdrawable is an SVID source that can lose its identity, the way
// certs.WorkloadSource reports a PermissionDenied from the Workload API
// (certs' tests cover that against a real Workload API server). It keeps
// presenting the SVID, so that a connection can watch the health status.
type withdrawable struct {
	*x509svid.SVID
	serving atomic.Bool
	changed chan struct{}
}

func (w *withdrawable) Serving() bool                   { return w.serving.Load() }
func (w *withdrawable) ServingChanged() <-chan struct{} { return w.changed }

func (w *withdrawable) set(serving bool) {
	w.serving.Store(serving)
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// TestHealthFollowsTheIdentity: while the SVID source has no identity for
// the workload, health reports NOT_SERVING; once it has one again,
// SERVING. Both stacks.
func TestHealthFollowsTheIdentity(t *testing.T) {
	t.Parallel()
	for _, st := range greetStacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "example.org")
			src := &withdrawable{SVID: pki.SVID(t, greeterID), changed: make(chan struct{}, 1)}
			src.serving.Store(true)
			addr := st.serve(t, mesh.Credentials{SVID: src, Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
			hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			check := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
				"https://"+addr+"/grpc.health.v1.Health/Check", connect.WithGRPC())
			waitFor := func(want healthpb.HealthCheckResponse_ServingStatus) {
				t.Helper()
				var got healthpb.HealthCheckResponse_ServingStatus
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					resp, err := check.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{Service: "greet.v1.GreetService"}))
					if err != nil {
						t.Fatal(err)
					}
					if got = resp.Msg.GetStatus(); got == want {
						return
					}
				}
				t.Fatalf("health = %v, want %v", got, want)
			}
			waitFor(healthpb.HealthCheckResponse_SERVING)
			src.set(false)
			waitFor(healthpb.HealthCheckResponse_NOT_SERVING)
			src.set(true)
			waitFor(healthpb.HealthCheckResponse_SERVING)
		})
	}
}
