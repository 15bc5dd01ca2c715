package mesh

import (
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/trustmesh/trustmesh/internal/rpcotel"
)

// Telemetry says where a server's or client's OpenTelemetry data goes.
// Zero fields take the OpenTelemetry globals (otel.GetTracerProvider and so
// on), which is what otelenv.Setup configures.
type Telemetry struct {
	// TracerProvider creates the spans; default: the global one.
	TracerProvider trace.TracerProvider
	// MeterProvider records RPC metrics; default: the global one.
	MeterProvider metric.MeterProvider
	// Propagator reads and writes trace context and baggage; default: the
	// global one. telemetry.W3C() is W3C trace context and baggage with the
	// parse of a repeated baggage header cached: otelenv installs it.
	Propagator propagation.TextMapPropagator
	// TrustRemote makes a server continue the caller's trace instead of
	// starting a new one linked to it (denied calls too), on both stacks.
	// Leave it false at the edge (callers outside the mesh), so that a
	// caller cannot choose the trace its calls and refusals are recorded
	// under; set it on mesh-internal servers, whose callers are verified
	// workloads. Default false. (Before the mesh instrumented grpc-go
	// itself, grpc-go servers always continued the caller's trace.)
	TrustRemote bool
	// Unsampled declares that no span TracerProvider makes ever leaves it
	// (its sampler is always_off, or it has no exporter or span processor)
	// and that MeterProvider has no reader: nothing the instrumentation
	// would make reaches anyone. otelenv's Providers.Off reports it for the
	// set-up the environment asks for (OTEL_TRACES_EXPORTER=none or
	// OTEL_TRACES_SAMPLER=always_off, with OTEL_METRICS_EXPORTER=none).
	// The server or client is then not instrumented at all, as if
	// [WithTelemetry] or [WithClientTelemetry] were not given, and costs
	// nothing per call: no span is started, no metric or decision counted,
	// no trace context or baggage read from callers or sent downstream (a
	// downstream service that samples starts traces of its own, and the
	// caller chain starts again there). Declare it only when it holds: what
	// the providers would have recorded is not made. Default false. No-op
	// providers (go.opentelemetry.io/otel/trace/noop and
	// go.opentelemetry.io/otel/metric/noop, both of them) are detected
	// without it.
	Unsampled bool
}

// check refuses providers that are typed nils (a (*sdktrace.TracerProvider)(nil),
// say), which would panic inside OpenTelemetry on the first use; nil
// fields are fine (the globals).
func (t Telemetry) check(option string) error {
	for _, f := range []struct {
		name string
		v    any
	}{{"TracerProvider", t.TracerProvider}, {"MeterProvider", t.MeterProvider}, {"Propagator", t.Propagator}} {
		if f.v != nil && isNil(f.v) {
			return fmt.Errorf("mesh: %s: Telemetry.%s is a nil %T (leave it unset for the global one)", option, f.name, f.v)
		}
	}
	return nil
}

// off reports whether t makes nothing that anyone sees: declared
// [Telemetry.Unsampled], or no-op tracer and meter providers. Zero
// providers are the globals, which may be set later: they are not off.
func (t Telemetry) off() bool {
	if t.Unsampled {
		return true
	}
	_, noTraces := t.TracerProvider.(tracenoop.TracerProvider)
	_, noMetrics := t.MeterProvider.(metricnoop.MeterProvider)
	return noTraces && noMetrics
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
// denied call gets its own span with the decision. A [Telemetry.Unsampled]
// t (or one of no-op providers) leaves the server uninstrumented. By
// default servers are not instrumented.
func WithTelemetry(t Telemetry) ServerOption {
	return serverOption(func(c *serverConfig) {
		if err := t.check("WithTelemetry"); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if t.off() {
			c.telemetry = nil
			return
		}
		t = t.withDefaults()
		c.telemetry = &t
	})
}

// WithClientTelemetry instruments a client: a client span for every call
// (health checks excepted), trace context and baggage sent downstream, and
// the workload's own SPIFFE ID appended to the caller chain. A
// [Telemetry.Unsampled] t (or one of no-op providers) leaves the client
// uninstrumented. By default clients are not instrumented.
func WithClientTelemetry(t Telemetry) ClientOption {
	return clientOption(func(c *clientConfig) {
		if err := t.check("WithClientTelemetry"); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if t.off() {
			c.telemetry = nil
			return
		}
		t = t.withDefaults()
		c.telemetry = &t
	})
}

// instrumentation is the rpcotel instrumentation of t's servers (server
// true) or clients (which ignore [Telemetry.TrustRemote]).
func (t *Telemetry) instrumentation(server bool) (*rpcotel.Instrumentation, error) {
	in, err := rpcotel.New(rpcotel.Config{TracerProvider: t.TracerProvider, MeterProvider: t.MeterProvider, Propagator: t.Propagator, TrustRemote: t.TrustRemote}, server)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err) // the caller says "mesh: " and where
	}
	return in, nil
}
