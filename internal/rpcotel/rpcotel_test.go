package rpcotel

import (
	"fmt"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func newTest(t *testing.T, server bool) *Instrumentation {
	t.Helper()
	in, err := New(Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}}, server)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// The method cache holds at most maxMethods names (a client can be asked
// for any), and a name beyond them still gets its own, correct method.
func TestMethodCacheIsBounded(t *testing.T) {
	in := newTest(t, false)
	for i := range maxMethods + 100 {
		full := fmt.Sprintf("/pkg.Svc/M%d", i)
		if m := in.method(full); m.name != full[1:] {
			t.Fatalf("method(%q).name = %q", full, m.name)
		}
	}
	if n := len(*in.methods.m.Load()); n != maxMethods {
		t.Fatalf("cache holds %d methods, want %d", n, maxMethods)
	}
	first := in.method("/pkg.Svc/M1")
	if again := in.method("/pkg.Svc/M1"); again != first {
		t.Fatal("a cached method is built again")
	}
}

// The conventions' error rule per role, and codes past UNAUTHENTICATED
// counted as UNKNOWN.
func TestErrorRulePerRole(t *testing.T) {
	server, client := newTest(t, true), newTest(t, false)
	for code := range uint32(numCodes) {
		want := map[uint32]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}[code]
		if got := server.isError(code); got != want {
			t.Errorf("server: isError(%s) = %v", codeNames[code], got)
		}
		if got := client.isError(code); got != (code != 0) {
			t.Errorf("client: isError(%s) = %v", codeNames[code], got)
		}
	}
}

func TestNewRefusesMissingProviders(t *testing.T) {
	if _, err := New(Config{}, true); err == nil || err.Error() != "rpcotel: nil tracer provider, meter provider or propagator" {
		t.Fatalf("New(zero config): %v", err)
	}
}
