package meshtest

import (
	"context"
	"testing"
	"time"

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

// WaitServerTraceIDs waits until n server spans have ended (a server ends
// its span as it answers, so a client may see the answer first) and returns
// their trace IDs. It fails the test if that takes longer than 10 seconds.
func (tr *Traces) WaitServerTraceIDs(t testing.TB, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ids := tr.ServerTraceIDs()
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshtest: %d server spans ended, want %d", len(ids), n)
		}
	}
}
