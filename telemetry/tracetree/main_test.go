package tracetree_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (the
// receiver, the printer's timer, an exporter).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
