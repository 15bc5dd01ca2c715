package otelenv_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (an
// exporter, a batch span processor, the printer's timer).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
