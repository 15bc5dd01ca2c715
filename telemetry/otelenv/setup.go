package otelenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

// Exporter names reported in [Providers.TraceExporter].
const (
	// ExporterTree means spans go only to the [tracetree.Printer] given to
	// [DefaultToConsoleTree].
	ExporterTree = "tree"
	// ExporterNone means OTEL_TRACES_EXPORTER=none.
	ExporterNone = "none"
)

// Providers holds what [Setup] built. Its Shutdown must be called before the
// process exits, or spans still batched are lost.
type Providers struct {
	// TracerProvider has the environment's exporter behind a batch span
	// processor, the sampler from OTEL_TRACES_SAMPLER and the resource.
	TracerProvider *sdktrace.TracerProvider
	// MeterProvider has the environment's metric reader (if any).
	MeterProvider *sdkmetric.MeterProvider
	// Propagator is W3C trace context plus W3C baggage ([telemetry.W3C]).
	Propagator propagation.TextMapPropagator
	// Resource carries service.name (OTEL_SERVICE_NAME wins over the name
	// given to Setup), service.version, OTEL_RESOURCE_ATTRIBUTES and the SDK
	// attributes.
	Resource *resource.Resource
	// TraceExporter names where spans go: the OTEL_TRACES_EXPORTER value
	// ("otlp", "console", "none", or "otlp" when unset), or [ExporterTree].
	TraceExporter string

	off          bool
	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the tracer and meter providers of one service from the
// standard environment:
//
//   - OTEL_TRACES_EXPORTER (otlp, console, none; otlp when unset) and
//     OTEL_METRICS_EXPORTER (otlp, console, none, prometheus), through
//     autoexport, whose prometheus exporter serves /metrics on
//     OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT
//     (localhost:9464 when unset) unless [WithPrometheusServer] names a
//     shared server; OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL
//     (http/protobuf when unset, or grpc) and the other OTEL_EXPORTER_OTLP_*
//     variables are read by the OTLP exporters; OTEL_BSP_* by the batch span
//     processor;
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, read by the SDK
//     (parentbased_always_on when unset). Setup checks them first, since the
//     SDK would only log a bad value and sample everything;
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which override
//     serviceName and version.
//
// The propagator is W3C trace context plus baggage. [Providers.Off] reports
// a set-up that exports nothing (OTEL_TRACES_EXPORTER=none
// OTEL_METRICS_EXPORTER=none): telemetry is then off. Unless [WithoutGlobal] is
// given, the providers and propagator become the otel globals. A bad value in
// any of these variables is an error naming it; nothing is silently ignored.
func Setup(ctx context.Context, serviceName, version string, opts ...Option) (*Providers, error) {
	var cfg setupConfig
	for _, o := range opts {
		o.applyToSetup(&cfg)
	}
	if err := checkSampler(); err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("otelenv: resource: %w", err)
	}

	p := &Providers{
		Propagator: telemetry.W3C(),
		Resource:   res,
	}
	treeDefault := cfg.tree != nil
	tracesDefault := treeDefault && os.Getenv("OTEL_TRACES_EXPORTER") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == ""
	metricsDefault := treeDefault && os.Getenv("OTEL_METRICS_EXPORTER") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") == ""

	var exp sdktrace.SpanExporter // to shut down if Setup fails later
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if tracesDefault {
		p.TraceExporter = ExporterTree
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sharedProcessor{cfg.tree}))
	} else {
		if name := os.Getenv("OTEL_TRACES_EXPORTER"); name == "" || name == "otlp" {
			exp, err = newOTLPExporter(ctx) // autoexport's OTLP clients, a cheaper transform (otlp.go)
		} else {
			exp, err = autoexport.NewSpanExporter(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("otelenv: OTEL_TRACES_EXPORTER=%q: %w", os.Getenv("OTEL_TRACES_EXPORTER"), err)
		}
		p.TraceExporter = os.Getenv("OTEL_TRACES_EXPORTER")
		if p.TraceExporter == "" {
			p.TraceExporter = "otlp"
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		}
	}
	for _, sp := range cfg.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}

	noSpans := neverSamples() || (p.TraceExporter == ExporterNone && len(cfg.processors) == 0)
	noMetrics := true
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	if !metricsDefault {
		reader, err := metricReader(ctx, cfg.prom, res)
		if err != nil {
			if exp != nil {
				err = errors.Join(err, exp.Shutdown(ctx))
			}
			return nil, err
		}
		if !autoexport.IsNoneMetricReader(reader) {
			mpOpts = append(mpOpts, sdkmetric.WithReader(reader))
			noMetrics = false
		}
	}
	p.off = noSpans && noMetrics

	p.TracerProvider = sdktrace.NewTracerProvider(tpOpts...)
	p.MeterProvider = sdkmetric.NewMeterProvider(mpOpts...)
	if !cfg.noGlobal {
		otel.SetTracerProvider(p.TracerProvider)
		otel.SetMeterProvider(p.MeterProvider)
		otel.SetTextMapPropagator(p.Propagator)
	}
	return p, nil
}

// Off reports whether nothing the providers make can leave the process: no
// span reaches an exporter or a span processor (OTEL_TRACES_EXPORTER=none
// and no [WithSpanProcessor]; or a sampler that never samples:
// OTEL_TRACES_SAMPLER=always_off, or traceidratio with
// OTEL_TRACES_SAMPLER_ARG=0), and the meter provider has no reader
// (OTEL_METRICS_EXPORTER=none, or unset under [DefaultToConsoleTree]).
// `OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none` is the usual way
// to say it. A program should then install no instrumentation at all
// (mesh.WithTelemetry, or mesh.Telemetry.Unsampled), which costs nothing
// per call, where instrumentation whose every span is dropped would still
// read trace context, start spans and build metric attributes on every
// call. Off leaves the providers usable: they record nothing anyone sees.
func (p *Providers) Off() bool { return p.off }

// neverSamples reports whether OTEL_TRACES_SAMPLER (checked by
// checkSampler) samples no span at all, whatever the parent: always_off,
// or traceidratio with a ratio of 0 (the parent-based samplers follow a
// sampled parent).
func neverSamples() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER"))) {
	case "always_off":
		return true
	case "traceidratio":
		arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
		v, err := strconv.ParseFloat(arg, 64)
		return arg != "" && err == nil && v == 0
	}
	return false
}

// metricReader is the reader OTEL_METRICS_EXPORTER asks for: autoexport's,
// or for prometheus one on prom when given.
func metricReader(ctx context.Context, prom *PrometheusServer, res *resource.Resource) (sdkmetric.Reader, error) {
	if os.Getenv("OTEL_METRICS_EXPORTER") == ExporterPrometheus {
		// autoexport would let net.Listen read a bad port as a service name.
		if _, _, err := prometheusHostPort(); err != nil {
			return nil, err
		}
		if prom != nil {
			return prom.reader(res)
		}
	}
	reader, err := autoexport.NewMetricReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("otelenv: OTEL_METRICS_EXPORTER=%q: %w", os.Getenv("OTEL_METRICS_EXPORTER"), err)
	}
	return reader, nil
}

// Shutdown flushes every batched span and metric to the exporters and stops
// them; ctx bounds how long that may take. Call it on SIGTERM before exiting.
// Only the first call does the work; later calls return its result. A
// [tracetree.Printer] given to [DefaultToConsoleTree] is flushed, not shut
// down.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		var errs []error
		if err := p.TracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("otelenv: shut down tracer provider: %w", err))
		}
		if err := p.MeterProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("otelenv: shut down meter provider: %w", err))
		}
		p.shutdownErr = errors.Join(errs...)
	})
	return p.shutdownErr
}

// sharedProcessor hands spans to a tracetree.Printer that outlives the
// provider: shutting the provider down flushes the printer but leaves it open
// for the other providers that share it.
type sharedProcessor struct{ *tracetree.Printer }

func (s sharedProcessor) Shutdown(ctx context.Context) error { return s.ForceFlush(ctx) }

// samplers lists the OTEL_TRACES_SAMPLER values the Go SDK implements.
var samplers = map[string]bool{ // value: takes a ratio argument
	"always_on":                false,
	"always_off":               false,
	"traceidratio":             true,
	"parentbased_always_on":    false,
	"parentbased_always_off":   false,
	"parentbased_traceidratio": true,
}

// checkSampler rejects the OTEL_TRACES_SAMPLER(_ARG) values that the SDK
// would report only through the otel error handler before falling back to
// sampling everything.
func checkSampler() error {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	if name == "" {
		return nil
	}
	ratio, ok := samplers[name]
	if !ok {
		return fmt.Errorf("otelenv: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", os.Getenv("OTEL_TRACES_SAMPLER"))
	}
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	if !ratio || arg == "" {
		return nil
	}
	if v, err := strconv.ParseFloat(arg, 64); err != nil || !(v >= 0 && v <= 1) { // NaN too
		return fmt.Errorf("otelenv: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	}
	return nil
}
