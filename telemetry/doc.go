// Package telemetry is the small part of trustmesh's OpenTelemetry support
// that the interceptors need, and all that importing them links: the span
// attribute schema shared by the grpc-go and connect-go stacks and the
// caller chain. It depends on the OpenTelemetry API only (attribute, trace,
// baggage), never on an SDK exporter.
//
// attributes.go holds the schema: the verified peer's SPIFFE ID, the
// authorization decision and the rule that made it ([RecordDecision]), and
// the caller chain ([RecordChain]). The caller chain travels in W3C baggage
// ([AppendChain], [ChainFromContext]); it is informational only and never
// used to authorize. [W3C] is the W3C trace context and baggage
// propagator, with the parse of a repeated baggage header cached.
//
// What a binary needs on top lives apart, so that a library user does not
// link it: [github.com/trustmesh/trustmesh/telemetry/otelenv] builds tracer
// and meter providers from the OTEL_* environment (with the exporters), and
// [github.com/trustmesh/trustmesh/telemetry/tracetree] prints traces as
// trees, in process or received over OTLP.
package telemetry
