package interceptors_test

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
	"github.com/trustmesh/trustmesh/telemetry"
)

// BenchmarkServerSpan is the always-on tracing of one served grpc-go
// call, without the network: the tap's metadata, the span's interceptor
// (extraction, start, end with the status) and the one that annotates it
// (the caller chain), with the SDK's batch span processor in front of an
// exporter that drops the batches. What it allocates is what tracing adds
// to a call; its time is the part of the per-hop cost that is ours and the
// SDK's, not grpc-go's.
func BenchmarkServerSpan(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	in, err := rpcotel.New(rpcotel.Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider(), Propagator: telemetry.W3C(), TrustRemote: true}, true)
	if err != nil {
		b.Fatal(err)
	}
	const method = "/shop.inventory.v1.InventoryService/ListProducts"
	md := metadata.MD{
		"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"baggage":     {"trustmesh.chain=spiffe%3A%2F%2Fshop.example%2Fns%2Fshop%2Fsa%2Fgateway"},
	}
	ctx, err := in.TapHandle()(context.Background(), &tap.Info{FullMethodName: method, Header: md})
	if err != nil {
		b.Fatal(err)
	}
	ctx = authn.NewContext(ctx, &identity.Principal{ID: spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/gateway")})
	info := &grpc.UnaryServerInfo{FullMethod: method}
	served, annotate := in.UnaryServerInterceptor(), interceptors.UnaryServerTrace()
	handler := func(ctx context.Context, req any) (any, error) {
		return annotate(ctx, req, info, func(context.Context, any) (any, error) { return nil, nil })
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := served(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}
