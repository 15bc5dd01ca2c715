package mesh

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Telemetry says where a server's or client's OpenTelemetry data goes.
// Zero fields take the OpenTelemetry globals (otel.GetTracerProvider and so
// on), which is what telemetry.Setup configures.
type Telemetry struct {
	// TracerProvider creates the spans; default: the global one.
	TracerProvider trace.TracerProvider
	// MeterProvider records RPC metrics; default: the global one.
	MeterProvider metric.MeterProvider
	// Propagator reads and writes trace context and baggage; default: the
	// global one.
	Propagator propagation.TextMapPropagator
	// TrustRemote makes a connect-go server continue the caller's trace
	// instead of starting a new one linked to it. Leave it false at the
	// edge (callers outside the mesh); set it on mesh-internal servers,
	// whose callers are verified workloads. grpc-go servers always continue
	// the caller's trace (otelgrpc has no such switch).
	TrustRemote bool
}

func (t Telemetry) withDefaults() Telemetry {
	if t.TracerProvider == nil {
		t.TracerProvider = otel.GetTracerProvider()
	}
	if t.MeterProvider == nil {
		t.MeterProvider = otel.GetMeterProvider()
	}
	if t.Propagator == nil {
		t.Propagator = otel.GetTextMapPropagator()
	}
	return t
}

// WithTelemetry instruments a server: a server span (and RPC metrics) for
// every call except health checks, with the caller's SPIFFE ID, the
// authorization decision and rule, and the caller chain as attributes; a
// denied call gets its own span with the decision. By default servers are
// not instrumented.
func WithTelemetry(t Telemetry) ServerOption {
	return serverOption(func(c *serverConfig) {
		t = t.withDefaults()
		c.telemetry = &t
	})
}

// WithClientTelemetry instruments a client: a client span for every call
// (health checks excepted), trace context and baggage sent downstream, and
// the workload's own SPIFFE ID appended to the caller chain. By default
// clients are not instrumented.
func WithClientTelemetry(t Telemetry) ClientOption {
	return clientOption(func(c *clientConfig) {
		t = t.withDefaults()
		c.telemetry = &t
	})
}

func (t *Telemetry) grpcServerHandler() grpc.ServerOption {
	return grpc.StatsHandler(skipHealth{otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.TracerProvider),
		otelgrpc.WithMeterProvider(t.MeterProvider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)})
}

func (t *Telemetry) grpcClientHandler() grpc.DialOption {
	return grpc.WithStatsHandler(skipHealth{otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.TracerProvider),
		otelgrpc.WithMeterProvider(t.MeterProvider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)})
}

// skipHealth keeps health checks away from a stats handler altogether:
// otelgrpc's filter only stops the span, after the handler has extracted
// the headers, parsed the method and built attribute sets, and it still
// records metrics for every event. A health check (probes call it every
// few seconds) costs nothing here beyond a prefix test.
type skipHealth struct{ stats.Handler }

type skippedKey struct{}

func (h skipHealth) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/") {
		return context.WithValue(ctx, skippedKey{}, true)
	}
	return h.Handler.TagRPC(ctx, info)
}

func (h skipHealth) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if ctx.Value(skippedKey{}) != nil {
		return
	}
	h.Handler.HandleRPC(ctx, rs)
}

func (t *Telemetry) connectInterceptor() (*otelconnect.Interceptor, error) {
	opts := []otelconnect.Option{
		otelconnect.WithTracerProvider(t.TracerProvider),
		otelconnect.WithMeterProvider(t.MeterProvider),
		otelconnect.WithPropagator(t.Propagator),
		otelconnect.WithFilter(func(_ context.Context, spec connect.Spec) bool {
			return !strings.HasPrefix(spec.Procedure, "/grpc.health.v1.Health/")
		}),
	}
	if t.TrustRemote {
		opts = append(opts, otelconnect.WithTrustRemote())
	}
	return otelconnect.NewInterceptor(opts...)
}
