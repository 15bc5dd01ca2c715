// Package telemetry sets up OpenTelemetry for trustmesh services and makes
// their traces readable.
//
// [Setup] builds a tracer provider and a meter provider from the standard
// OTEL_* environment (exporters through
// go.opentelemetry.io/contrib/exporters/autoexport, the sampler from
// OTEL_TRACES_SAMPLER, the resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES) with W3C trace context and baggage propagation,
// and [Providers.Shutdown] flushes both.
//
// The span attribute schema shared by the grpc-go and connect-go stacks lives
// in attributes.go: the verified peer's SPIFFE ID, the authorization decision
// and the rule that made it ([RecordDecision]), and the caller chain
// ([RecordChain]). The caller chain travels in W3C baggage ([AppendChain],
// [ChainFromContext]); it is informational only and never used to authorize.
//
// For local runs, a [TreePrinter] prints each finished trace as an indented
// tree, one line per span, and [ServeReceiver] accepts OTLP (gRPC and
// HTTP/protobuf) from other processes and prints their traces the same way.
package telemetry
