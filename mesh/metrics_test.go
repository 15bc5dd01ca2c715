package mesh_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestDecisionCounter: with telemetry, trustmesh.authz.decisions counts
// every decision by decision and rule.
func TestDecisionCounter(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a, err := interceptors.NewAuthorizer(healthPolicy(t, false))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}, mesh.WithAuthorizer(a),
		mesh.WithTelemetry(mesh.Telemetry{TracerProvider: noop.NewTracerProvider(), MeterProvider: mp, Propagator: propagation.TraceContext{}}))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	gateway := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	alice := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/user/alice"), Bundles: pki.Bundle()}
	for range 3 {
		if err := grpcCheck(t, addr, gateway, serverID); err != nil {
			t.Fatal(err)
		}
	}
	if err := grpcCheck(t, addr, alice, serverID); err == nil {
		t.Fatal("alice's health check was allowed")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "trustmesh.authz.decisions" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				decision, _ := dp.Attributes.Value("trustmesh.authz.decision")
				rule, _ := dp.Attributes.Value("trustmesh.authz.rule")
				got[decision.AsString()+" "+rule.AsString()] += dp.Value
			}
		}
	}
	want := map[string]int64{"allow gateway-checks-health": 3, "deny default-deny": 1}
	if len(got) != len(want) || got["allow gateway-checks-health"] != 3 || got["deny default-deny"] != 1 {
		t.Errorf("trustmesh.authz.decisions = %v, want %v", got, want)
	}
}
