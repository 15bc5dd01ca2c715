package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/trustmesh/trustmesh/telemetry"
)

func TestRecordDecision(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name, peer, decision, rule string
		want                       []attribute.KeyValue
		wantEvent                  bool
	}{
		{"allow", gateway, telemetry.DecisionAllow, "gateway-only", []attribute.KeyValue{
			telemetry.AuthzDecisionKey.String("allow"), telemetry.PeerSPIFFEIDKey.String(gateway), telemetry.AuthzRuleKey.String("gateway-only"),
		}, false},
		{"deny-by-default", user, telemetry.DecisionDeny, "", []attribute.KeyValue{
			telemetry.AuthzDecisionKey.String("deny"), telemetry.PeerSPIFFEIDKey.String(user),
		}, true},
		{"dry-run-deny", gateway, telemetry.DecisionDryRunDeny, "admins", []attribute.KeyValue{
			telemetry.AuthzDecisionKey.String("dry_run_deny"), telemetry.PeerSPIFFEIDKey.String(gateway), telemetry.AuthzRuleKey.String("admins"),
		}, false},
		{"no-peer", "", telemetry.DecisionDeny, "", []attribute.KeyValue{telemetry.AuthzDecisionKey.String("deny")}, true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			_, span := tp.Tracer("test").Start(context.Background(), "op")
			telemetry.RecordDecision(span, tc.peer, tc.decision, tc.rule)
			telemetry.RecordChain(span, []string{user, gateway})
			telemetry.RecordChain(span, nil) // no-op
			span.End()
			got := rec.Ended()[0]
			want := append(tc.want, telemetry.CallerChainKey.StringSlice([]string{user, gateway}))
			if a := attribute.NewSet(got.Attributes()...); !a.Equals(ptr(attribute.NewSet(want...))) {
				t.Errorf("attributes = %v, want %v", got.Attributes(), want)
			}
			events := got.Events()
			if tc.wantEvent != (len(events) == 1 && events[0].Name == telemetry.DeniedEvent) || len(events) > 1 {
				t.Errorf("events = %v, want denied event: %v", events, tc.wantEvent)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRecordDecisionNotRecordingAllocatesNothing(t *testing.T) {
	_, span := noop.NewTracerProvider().Tracer("test").Start(context.Background(), "op")
	chain := []string{user}
	allocs := testing.AllocsPerRun(100, func() {
		telemetry.RecordDecision(span, gateway, telemetry.DecisionDeny, "gateway-only")
		telemetry.RecordChain(span, chain)
	})
	if allocs != 0 {
		t.Errorf("RecordDecision on a non-recording span: %v allocations, want 0", allocs)
	}
}

func BenchmarkRecordDecision(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	_, span := tp.Tracer("test").Start(context.Background(), "op", trace.WithSpanKind(trace.SpanKindServer))
	b.ReportAllocs()
	for b.Loop() {
		telemetry.RecordDecision(span, gateway, telemetry.DecisionAllow, "gateway-only")
	}
}
