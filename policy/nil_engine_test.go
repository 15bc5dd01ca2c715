package policy_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// TestNilEngine proves that a nil *Engine, what a [policy.Source] of a
// user's own may hand out when it has no policy, fails closed: it denies
// every call (allocating nothing), covers no method, trusts no issuer and
// has no rules, rather than panicking in the middle of a call. It is not
// parallel: AllocsPerRun refuses to run in a parallel test.
func TestNilEngine(t *testing.T) {
	var e *policy.Engine
	gateway := spiffeid.RequireFromString("spiffe://td/ns/shop/sa/gateway")
	want := policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}
	if got := e.DecideFor(gwList, gateway, spiffeid.RequireFromString("spiffe://td/user/alice")); got != want {
		t.Errorf("nil Engine DecideFor = %+v, want %+v", got, want)
	}
	if got := e.Decide(gwList, gateway); got != want {
		t.Errorf("nil Engine Decide = %+v, want %+v", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { e.Decide(gwList, gateway) }); allocs != 0 {
		t.Errorf("nil Engine Decide allocates %v times per call, want 0", allocs)
	}
	if e.Covers(gwList) {
		t.Error("nil Engine Covers a method")
	}
	if e.IsTxnIssuer(gateway) || e.TxnIssuers() != nil {
		t.Error("nil Engine trusts a txn issuer")
	}
	if e.NeedsSubjects() || e.Rules() != 0 || e.TokenRules() != nil {
		t.Errorf("nil Engine: NeedsSubjects %v, Rules %d, TokenRules %q; want none", e.NeedsSubjects(), e.Rules(), e.TokenRules())
	}
	if e.Engine() != nil {
		t.Error("nil Engine's Engine() is not nil")
	}
}
