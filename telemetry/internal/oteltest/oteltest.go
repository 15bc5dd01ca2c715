package oteltest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// ClearOTelEnv unsets every OTEL_* variable for the rest of the test (with
// t.Setenv, so the test must not be parallel), so that the developer's
// environment cannot change the results.
func ClearOTelEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "")
		}
	}
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
}

// WaitFor polls cond every 10ms until it holds, and fails the test naming
// what it waited for if 10 seconds pass first.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
