package bench_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/trustmesh/trustmesh/bench/internal/benchsvc"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/gen/shop/inventory/v1/inventoryv1connect"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/telemetry"
)

// tracingConfig is one telemetry set-up of BenchmarkTracing.
type tracingConfig struct {
	name string
	// tel returns the Telemetry of both ends of the hop; nil: telemetry off
	// (no WithTelemetry, no WithClientTelemetry).
	tel func(b *testing.B) *mesh.Telemetry
}

// benchPropagator is what otelenv.Setup installs: W3C trace context and
// baggage, the baggage parse cached per header.
var benchPropagator = telemetry.W3C()

// sdkTelemetry is the OpenTelemetry SDK with sampler s, batch export to an
// exporter that drops the batches, and a meter provider without a reader:
// what otelenv.Setup builds for OTEL_TRACES_SAMPLER=... with
// OTEL_METRICS_EXPORTER=none.
func sdkTelemetry(b *testing.B, s sdktrace.Sampler) *mesh.Telemetry {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider()
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	return &mesh.Telemetry{TracerProvider: tp, MeterProvider: mp, Propagator: benchPropagator, TrustRemote: true}
}

var tracingConfigs = []tracingConfig{
	{"off", func(*testing.B) *mesh.Telemetry { return nil }},
	{"noop", func(*testing.B) *mesh.Telemetry {
		return &mesh.Telemetry{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Propagator: benchPropagator, TrustRemote: true}
	}},
	{"never-sampler", func(b *testing.B) *mesh.Telemetry { return sdkTelemetry(b, sdktrace.NeverSample()) }},
	{"unsampled", func(b *testing.B) *mesh.Telemetry {
		t := sdkTelemetry(b, sdktrace.NeverSample())
		t.Unsampled = true // as otelenv's Providers.Off reports for OTEL_TRACES_SAMPLER=always_off OTEL_METRICS_EXPORTER=none
		return t
	}},
	{"ratio-0.1", func(b *testing.B) *mesh.Telemetry {
		return sdkTelemetry(b, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
	}},
	{"always-on", func(b *testing.B) *mesh.Telemetry { return sdkTelemetry(b, sdktrace.AlwaysSample()) }},
}

// BenchmarkTracing measures what telemetry costs a mesh hop, on both
// stacks: inventory ListProducts (the same method body on both) called by
// the gateway over mTLS through the full chain (SVID checks, identity,
// authorization), with both ends of the hop configured alike: telemetry
// off; no-op providers (which the mesh detects as off); the SDK never
// sampling, undeclared (the instrumentation runs) and declared
// Unsampled (what otelenv reports for always_off or exporters none: the
// mesh installs nothing); sampling 10% of root traces; always sampling
// (batch export to an exporter that drops the batches). Every SDK
// configuration has a meter provider without a reader.
// Compare each stack's row with `benchstat -col /impl`.
func BenchmarkTracing(b *testing.B) {
	pki := testpki.New(b, "shop.example")
	server := mesh.Credentials{SVID: pki.SVID(b, inventoryID), Bundles: pki.Bundle()}
	client := mesh.Credentials{SVID: pki.SVID(b, gatewayID), Bundles: pki.Bundle()}
	for _, cfg := range tracingConfigs {
		b.Run("stack=grpc-go/impl="+cfg.name, func(b *testing.B) {
			tel := cfg.tel(b)
			opts := []mesh.GRPCServerOption{mesh.WithAuthorizer(inventoryAuthorizer(b))}
			var copts []mesh.GRPCClientOption
			if tel != nil {
				opts = append(opts, mesh.WithTelemetry(*tel))
				copts = append(copts, mesh.WithClientTelemetry(*tel))
			}
			srv, err := mesh.NewGRPCServer(server, opts...)
			if err != nil {
				b.Fatal(err)
			}
			registerInventory(b, srv)
			addr := serveBench(b, srv.Serve)
			conn, err := mesh.DialGRPC(addr, client, spiffeid.RequireFromString(inventoryID), copts...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := inventoryv1.NewInventoryServiceClient(conn)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ListProducts(context.Background(), &inventoryv1.ListProductsRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stack=connect-go/impl="+cfg.name, func(b *testing.B) {
			tel := cfg.tel(b)
			opts := []mesh.ConnectServerOption{mesh.WithAuthorizer(inventoryAuthorizer(b))}
			var copts []mesh.ConnectClientOption
			if tel != nil {
				opts = append(opts, mesh.WithTelemetry(*tel))
				copts = append(copts, mesh.WithClientTelemetry(*tel))
			}
			srv, err := mesh.NewConnectServer(server, opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := mesh.Mount(srv, inventoryv1connect.NewInventoryServiceHandler, connectInventory(b)); err != nil {
				b.Fatal(err)
			}
			addr := serveBench(b, srv.Serve)
			hc, err := mesh.NewHTTPClient(client, spiffeid.RequireFromString(inventoryID))
			if err != nil {
				b.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			own, err := mesh.ConnectClientOptions(client, copts...)
			if err != nil {
				b.Fatal(err)
			}
			c := inventoryv1connect.NewInventoryServiceClient(hc, "https://"+addr, append(own, connect.WithGRPC())...)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ListProducts(context.Background(), connect.NewRequest(&inventoryv1.ListProductsRequest{})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// connectInventory serves the real inventory service's ListProducts on
// connect-go: the same method body as the grpc-go server.
func connectInventory(b *testing.B) inventoryv1connect.InventoryServiceHandler {
	b.Helper()
	impl, err := benchsvc.Inventory()
	if err != nil {
		b.Fatal(err)
	}
	return benchsvc.ConnectInventory(impl)
}
