package telemetry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (nothing
// in the package starts one, and it should stay that way).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
