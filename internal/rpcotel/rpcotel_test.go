package rpcotel

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"
)

func newTest(t *testing.T, server bool) *Instrumentation {
	t.Helper()
	in, err := New(Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}}, server)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// The method cache holds at most maxMethods names (a client can be asked
// for any), and a name beyond them still gets its own, correct method.
func TestMethodCacheIsBounded(t *testing.T) {
	in := newTest(t, false)
	for i := range maxMethods + 100 {
		full := fmt.Sprintf("/pkg.Svc/M%d", i)
		if m := in.method(full); m.name != full[1:] {
			t.Fatalf("method(%q).name = %q", full, m.name)
		}
	}
	if n := len(*in.methods.m.Load()); n != maxMethods {
		t.Fatalf("cache holds %d methods, want %d", n, maxMethods)
	}
	first := in.method("/pkg.Svc/M1")
	if again := in.method("/pkg.Svc/M1"); again != first {
		t.Fatal("a cached method is built again")
	}
}

// The conventions' error rule per role, and codes past UNAUTHENTICATED
// counted as UNKNOWN.
func TestErrorRulePerRole(t *testing.T) {
	server, client := newTest(t, true), newTest(t, false)
	for code := range uint32(numCodes) {
		want := map[uint32]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}[code]
		if got := server.isError(code); got != want {
			t.Errorf("server: isError(%s) = %v", codeNames[code], got)
		}
		if got := client.isError(code); got != (code != 0) {
			t.Errorf("client: isError(%s) = %v", codeNames[code], got)
		}
	}
}

func TestNewRefusesMissingProviders(t *testing.T) {
	if _, err := New(Config{}, true); err == nil || err.Error() != "rpcotel: nil tracer provider, meter provider or propagator" {
		t.Fatalf("New(zero config): %v", err)
	}
}

// The carrier of a served grpc-go call reads what metadata.MD.Get reads,
// from the metadata the tap handle kept (not the context's) or, without a
// tap, from the context's incoming metadata: present, absent and repeated
// keys, asked for in any case (a tapped carrier once found
// "X-Amzn-Trace-Id" nowhere); a health check is not tapped.
func TestServedCarrierReadsAsMetadataGet(t *testing.T) {
	md := metadata.MD{
		"traceparent":     {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"baggage":         {"a=1", "b=2"},
		"empty":           {},
		"x-amzn-trace-id": {"Root=1-5759e988-bd862e3fe1be46a994272793"}, // asked for as X-Amzn-Trace-Id
	}
	in := newTest(t, true)
	tapCtx, err := in.TapHandle()(context.Background(), &tap.Info{FullMethodName: "/pkg.Svc/M", Header: md})
	if err != nil {
		t.Fatal(err)
	}
	carriers := map[string]propagation.TextMapCarrier{
		"tapped":   grpcCarrier(metadata.NewIncomingContext(tapCtx, metadata.MD{"traceparent": {"not this one"}})),
		"untapped": grpcCarrier(metadata.NewIncomingContext(context.Background(), md)),
	}
	for name, c := range carriers {
		vg, ok := c.(propagation.ValuesGetter)
		if !ok {
			t.Fatalf("%s: the carrier is no ValuesGetter", name)
		}
		for _, key := range []string{"traceparent", "baggage", "tracestate", "empty", "X-Amzn-Trace-Id", "Baggage"} {
			want := md.Get(key)
			if g := c.Get(key); g != first(want) {
				t.Errorf("%s: Get(%q) = %q, MD.Get %q", name, key, g, want)
			}
			if g := vg.Values(key); !slices.Equal(g, want) {
				t.Errorf("%s: Values(%q) = %q, MD.Get %q", name, key, g, want)
			}
		}
		if g, w := sorted(c.Keys()), sorted(slices.Collect(maps.Keys(md))); !slices.Equal(g, w) {
			t.Errorf("%s: Keys() = %q, want %q", name, g, w)
		}
	}
	health, _ := in.TapHandle()(context.Background(), &tap.Info{FullMethodName: "/grpc.health.v1.Health/Check", Header: md})
	if health.Value(tapKey{}) != nil {
		t.Error("a health check's metadata was tapped")
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func sorted(s []string) []string { slices.Sort(s); return s }

// A client call made under a served call's context may end after the
// served call has (a stream ended by its context, a detached call): its
// end must not touch the served call's Pending, which by then serves
// another call. Under -race this failed when a client span's end looked
// the Pending up.
func TestClientEndLeavesTheServedCallsPending(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	cfg := Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}, TrustRemote: true}
	srv, err := New(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m, cm := srv.method("/pkg.Svc/M"), cli.method("/pkg.Svc/Down")
	var late sync.WaitGroup
	for range 200 {
		ctx, span := srv.startServer(context.Background(), propagation.MapCarrier{}, m, sysGRPC)
		if PendingFor(ctx, span) == nil {
			t.Fatal("a recording server span has no Pending")
		}
		cctx, cspan := cli.startClient(ctx, cm, sysGRPC)
		srv.end(ctx, span, m, sysGRPC, 0, "", time.Millisecond) // the Pending goes back to the pool
		late.Go(func() { cli.end(cctx, cspan, cm, sysGRPC, 0, "", time.Millisecond) })
	}
	late.Wait()
}
