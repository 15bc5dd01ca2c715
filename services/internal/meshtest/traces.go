package meshtest

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/mesh"
)

// Traces records the spans of the servers it instruments. Create it with
// [NewTraces].
type Traces struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
}

// NewTraces returns a Traces whose provider samples every span; it is shut
// down when the test ends.
func NewTraces(t testing.TB) *Traces {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &Traces{rec: rec, tp: tp}
}

// ServerOption instruments a server with this Traces' provider, as the
// edge (a caller's trace context is not continued).
func (tr *Traces) ServerOption() mesh.ServerOption {
	return mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tr.tp})
}

// ServerTraceIDs returns the trace IDs of the server spans that have ended,
// in the order they ended.
func (tr *Traces) ServerTraceIDs() []string {
	var ids []string
	for _, s := range tr.rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			ids = append(ids, s.SpanContext().TraceID().String())
		}
	}
	return ids
}
