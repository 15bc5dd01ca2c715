// Package otelenv sets up OpenTelemetry for a trustmesh binary from the
// standard OTEL_* environment.
//
// [Setup] builds a tracer provider and a meter provider (exporters through
// go.opentelemetry.io/contrib/exporters/autoexport, the sampler from
// OTEL_TRACES_SAMPLER, the resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES) with W3C trace context and baggage propagation,
// and [Providers.Shutdown] flushes both. With OTEL_TRACES_EXPORTER=otlp the
// span exporter is otelenv's own: the OTLP client autoexport would build
// (HTTP or gRPC, the same OTEL_EXPORTER_OTLP_* settings), fed the protobuf
// encoding of each batch, which otelenv writes itself at a fraction of
// otlptrace's cost per span (a string that is not valid UTF-8 is sent with
// U+FFFD where otlptrace fails the batch). [DefaultToConsoleTree] prints traces
// as trees ([github.com/trustmesh/trustmesh/telemetry/tracetree]) when the
// environment names no exporter, as `shop up` does. With
// OTEL_METRICS_EXPORTER=prometheus, each Providers serves its own /metrics
// (autoexport's server); several in one process share one instead: a
// [PrometheusServer] from [ListenPrometheus], given to each [Setup] with
// [WithPrometheusServer], labels every series with its service.name.
// [Providers.Off] reports a set-up that exports nothing
// (OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none, or a sampler that
// never samples with no metric exporter): telemetry is then off, and a
// program installs no instrumentation, which costs nothing per call.
//
// It links the OTLP, stdout and Prometheus exporters, so it is for main
// packages (cmd/shop, the sample's services); the toolkit's packages
// (identity, policy, interceptors, mesh) do not import it and take their
// providers as parameters.
package otelenv
