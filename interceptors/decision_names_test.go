package interceptors_test

import (
	"testing"

	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
)

// TestDecisionNames: the span attribute values telemetry documents are the
// strings the policy's outcomes print as (the interceptors pass one as the
// other).
func TestDecisionNames(t *testing.T) {
	t.Parallel()
	for outcome, want := range map[policy.Outcome]string{
		policy.Allowed:      telemetry.DecisionAllow,
		policy.Denied:       telemetry.DecisionDeny,
		policy.DryRunDenied: telemetry.DecisionDryRunDeny,
	} {
		if got := outcome.String(); got != want {
			t.Errorf("%d.String() = %q, telemetry says %q", outcome, got, want)
		}
	}
}
