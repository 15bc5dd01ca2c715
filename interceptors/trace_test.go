package interceptors_test

import (
	"context"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/telemetry"
)

// spanContexts are the server spans a call can run under.
func spanContexts(t *testing.T) map[string]func(context.Context) context.Context {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ids := trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	}
	unsampled := trace.NewSpanContext(ids)
	ids.TraceFlags = trace.FlagsSampled
	sampled := trace.NewSpanContext(ids)
	return map[string]func(context.Context) context.Context{
		// The SDK's span for a call its sampler dropped.
		"sampled-out": func(ctx context.Context) context.Context { return trace.ContextWithSpanContext(ctx, unsampled) },
		// A no-op tracer continuing a sampled caller's trace.
		"sampled-not-recording": func(ctx context.Context) context.Context { return trace.ContextWithSpanContext(ctx, sampled) },
		"recording": func(ctx context.Context) context.Context {
			ctx, span := tp.Tracer("test").Start(ctx, "call")
			t.Cleanup(func() { span.End() })
			return ctx
		},
		"no-span": func(ctx context.Context) context.Context { return ctx },
	}
}

// TestSampledOutCallsLeaveTheChainAsItCame: under a span whose trace was
// sampled out (not recording, unsampled), neither the server's trace
// interceptor nor a client's chain interceptor rewrites the baggage with
// the caller chain, and the server's costs no allocation (before, every
// call appended to the chain, parsing each hop and rebuilding the baggage,
// for spans that nobody records). Under any other span the chain grows as
// before. Not parallel: it counts allocations.
func TestSampledOutCallsLeaveTheChainAsItCame(t *testing.T) {
	gateway := spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/gateway")
	orders := spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/orders")
	identityThen := func(next grpc.UnaryHandler) grpc.UnaryHandler {
		return func(ctx context.Context, req any) (any, error) {
			return interceptors.UnaryServerIdentity()(ctx, req, &grpc.UnaryServerInfo{}, next)
		}
	}
	chainOf := func(ctx context.Context) []string {
		chain, _ := telemetry.ChainFromContext(ctx)
		return chain
	}
	serverTrace := interceptors.UnaryServerTrace()
	clientChain := interceptors.UnaryClientChain(orders)
	for name, withSpan := range spanContexts(t) {
		t.Run(name, func(t *testing.T) {
			wantServer, wantClient := []string{gateway.String()}, []string{orders.String()}
			if name == "sampled-out" {
				wantServer, wantClient = nil, nil
			}
			var got []string
			ctx := withSpan(callerContext(gateway.String()))
			_, _ = identityThen(func(ctx context.Context, req any) (any, error) {
				return serverTrace(ctx, req, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
					got = chainOf(ctx)
					return nil, nil
				})
			})(ctx, nil)
			if !slices.Equal(got, wantServer) {
				t.Errorf("server: chain %q, want %q", got, wantServer)
			}
			invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				got = chainOf(ctx)
				return nil
			}
			if err := clientChain(withSpan(context.Background()), "/m", nil, nil, nil, invoker); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, wantClient) {
				t.Errorf("client: chain %q, want %q", got, wantClient)
			}
		})
	}
	t.Run("sampled-out/allocations", func(t *testing.T) {
		var served context.Context
		_, _ = identityThen(func(ctx context.Context, _ any) (any, error) {
			served = ctx
			return nil, nil
		})(spanContexts(t)["sampled-out"](callerContext(gateway.String())), nil)
		handler := func(context.Context, any) (any, error) { return nil, nil }
		if n := testing.AllocsPerRun(100, func() { _, _ = serverTrace(served, nil, &grpc.UnaryServerInfo{}, handler) }); n != 0 {
			t.Errorf("UnaryServerTrace under a sampled-out span: %v allocs per call, want 0", n)
		}
	})
}
