package otelenv

import (
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

// Option configures [Setup].
type Option interface {
	applyToSetup(*setupConfig)
}

type setupConfig struct {
	processors []sdktrace.SpanProcessor
	noGlobal   bool
	tree       *tracetree.Printer
	prom       *PrometheusServer
}

// WithSpanProcessor adds sp to the tracer provider next to the exporter
// chosen by the environment, e.g. a [tracetree.Printer] or a
// tracetest.SpanRecorder in tests. The provider owns sp: [Providers.Shutdown]
// shuts it down. A nil sp is ignored. By default, no extra processor is added.
func WithSpanProcessor(sp sdktrace.SpanProcessor) Option {
	return spanProcessorOption{sp}
}

type spanProcessorOption struct{ sp sdktrace.SpanProcessor }

func (o spanProcessorOption) applyToSetup(c *setupConfig) {
	if o.sp != nil {
		c.processors = append(c.processors, o.sp)
	}
}

// WithoutGlobal leaves the OpenTelemetry globals alone. By default, Setup
// installs its tracer provider, meter provider and propagator as the otel
// globals (otel.SetTracerProvider and friends), which is what the mesh's
// telemetry (mesh.Telemetry's zero fields), otelgrpc and otelconnect use
// unless given providers explicitly.
func WithoutGlobal() Option {
	return withoutGlobalOption{}
}

type withoutGlobalOption struct{}

func (withoutGlobalOption) applyToSetup(c *setupConfig) { c.noGlobal = true }

// DefaultToConsoleTree is the `shop up` policy: when neither
// OTEL_TRACES_EXPORTER nor an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, spans are exported nowhere and
// handed to p, which prints a readable tree per trace; as soon as either
// variable is set, the environment decides as usual and p is not used. The
// same policy applies to metrics: with OTEL_METRICS_EXPORTER and the OTLP
// endpoints unset, no metric exporter runs (rather than autoexport's OTLP
// default, which would fail every minute against an absent collector).
//
// p may be shared by several [Providers] (`shop up` runs four services in one
// process, each with its own service.name, and one tree spans them all), so
// the caller owns p: [Providers.Shutdown] flushes it but does not shut it
// down; call p.Shutdown after the last Providers is shut down. A nil p is
// ignored. By default, autoexport's defaults apply (OTLP over HTTP to
// localhost:4318).
func DefaultToConsoleTree(p *tracetree.Printer) Option {
	return treeOption{p}
}

type treeOption struct{ p *tracetree.Printer }

func (o treeOption) applyToSetup(c *setupConfig) {
	if o.p != nil {
		c.tree = o.p
	}
}

// WithPrometheusServer sends the metrics to s when OTEL_METRICS_EXPORTER is
// prometheus ([ExporterPrometheus]), each series labelled service_name with
// the resource's service.name, instead of to an HTTP server of their own. It
// is for the Providers of several services in one process (`shop up`), which
// would otherwise each bind OTEL_EXPORTER_PROMETHEUS_PORT. [Setup] fails if
// another live Providers on s has the same service.name. A nil s is ignored,
// and so is s with any other OTEL_METRICS_EXPORTER. By default, autoexport's
// Prometheus exporter serves each Providers' metrics on its own server at
// OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT.
func WithPrometheusServer(s *PrometheusServer) Option {
	return promOption{s}
}

type promOption struct{ s *PrometheusServer }

func (o promOption) applyToSetup(c *setupConfig) {
	if o.s != nil {
		c.prom = o.s
	}
}
