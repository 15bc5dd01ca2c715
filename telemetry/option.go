package telemetry

import (
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Option configures [Setup].
type Option interface {
	applyToSetup(*setupConfig)
}

type setupConfig struct {
	processors []sdktrace.SpanProcessor
	noGlobal   bool
	tree       *TreePrinter
}

// WithSpanProcessor adds sp to the tracer provider next to the exporter
// chosen by the environment, e.g. a [TreePrinter] or a
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
// globals (otel.SetTracerProvider and friends), which is what otelgrpc and
// otelconnect use unless given providers explicitly.
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
func DefaultToConsoleTree(p *TreePrinter) Option {
	return treeOption{p}
}

type treeOption struct{ p *TreePrinter }

func (o treeOption) applyToSetup(c *setupConfig) {
	if o.p != nil {
		c.tree = o.p
	}
}

// TreeOption configures [NewTreePrinter] and [ServeReceiver].
type TreeOption interface {
	applyToTree(*treeConfig)
}

type treeConfig struct {
	quiet     time.Duration
	maxWait   time.Duration
	maxTraces int
	maxSpans  int
}

// Default bounds of a [TreePrinter].
const (
	// DefaultQuietPeriod is how long a TreePrinter waits, after the root span
	// of a trace ended, for more spans of that trace before printing it.
	DefaultQuietPeriod = 100 * time.Millisecond
	// DefaultReceiverQuietPeriod is the quiet period [ServeReceiver] uses:
	// spans of one trace arrive from several processes, each on its own
	// export schedule (OTEL_BSP_SCHEDULE_DELAY, 5s by default; set it lower
	// on the services for prompt trees).
	DefaultReceiverQuietPeriod = 2 * time.Second
	// DefaultMaxWait is how long a trace may stay buffered, counted from its
	// first ended span, before it is printed even without its root span.
	DefaultMaxWait = 30 * time.Second
	// DefaultMaxTraces is how many traces a TreePrinter buffers at once.
	DefaultMaxTraces = 1024
	// DefaultMaxSpans is how many spans a TreePrinter buffers per trace.
	DefaultMaxSpans = 512
)

// WithQuietPeriod sets how long the printer waits after a trace's root span
// ended, and after each later span of that trace, before printing it. Zero
// prints as soon as the root span ends. Negative values are ignored. By
// default, [DefaultQuietPeriod] ([DefaultReceiverQuietPeriod] in
// [ServeReceiver]).
func WithQuietPeriod(d time.Duration) TreeOption {
	return treeFunc(func(c *treeConfig) {
		if d >= 0 {
			c.quiet = d
		}
	})
}

// WithMaxWait sets how long a trace may stay buffered, counted from its first
// ended span, before it is printed without its root span (a long stream, a
// process that never exported its part). Values <= 0 are ignored. By default,
// [DefaultMaxWait].
func WithMaxWait(d time.Duration) TreeOption {
	return treeFunc(func(c *treeConfig) {
		if d > 0 {
			c.maxWait = d
		}
	})
}

// WithMaxTraces bounds the number of traces buffered at once; when a new
// trace would exceed it, the oldest buffered trace is dropped and counted in
// [TreePrinter.Dropped]. Values <= 0 are ignored. By default,
// [DefaultMaxTraces].
func WithMaxTraces(n int) TreeOption {
	return treeFunc(func(c *treeConfig) {
		if n > 0 {
			c.maxTraces = n
		}
	})
}

// WithMaxSpans bounds the number of spans buffered per trace; further spans
// are dropped and counted in [TreePrinter.Dropped]. Values <= 0 are ignored.
// By default, [DefaultMaxSpans].
func WithMaxSpans(n int) TreeOption {
	return treeFunc(func(c *treeConfig) {
		if n > 0 {
			c.maxSpans = n
		}
	})
}

type treeFunc func(*treeConfig)

func (f treeFunc) applyToTree(c *treeConfig) { f(c) }
