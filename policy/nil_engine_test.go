package policy_test

import (
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// TestNilEngine proves that a nil *Engine, what a [policy.Source] of a
// user's own may hand out when it has no policy, and a zero Engine (not
// built by Compile, which once panicked on a call and hung it), fail
// closed: they deny every call (allocating nothing), cover no method,
// trust no issuer and have no rules, rather than panicking in the middle
// of a call. It is not parallel: AllocsPerRun refuses to run in a parallel
// test.
func TestNilEngine(t *testing.T) {
	for name, e := range map[string]*policy.Engine{"nil": nil, "zero": {}} {
		gateway := spiffeid.RequireFromString("spiffe://td/ns/shop/sa/gateway")
		want := policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}
		if got := e.DecideFor(gwList, gateway, spiffeid.RequireFromString("spiffe://td/user/alice")); got != want {
			t.Errorf("%s Engine DecideFor = %+v, want %+v", name, got, want)
		}
		if got := e.Decide(gwList, gateway); got != want {
			t.Errorf("%s Engine Decide = %+v, want %+v", name, got, want)
		}
		if allocs := testing.AllocsPerRun(100, func() { e.Decide(gwList, gateway) }); allocs != 0 {
			t.Errorf("%s Engine Decide allocates %v times per call, want 0", name, allocs)
		}
		if e.Covers(gwList) {
			t.Errorf("%s Engine Covers a method", name)
		}
		if e.IsTxnIssuer(gateway) || e.TxnIssuers() != nil {
			t.Errorf("%s Engine trusts a txn issuer", name)
		}
		if e.NeedsSubjects() || e.Rules() != 0 || e.TokenRules() != nil {
			t.Errorf("%s Engine: NeedsSubjects %v, Rules %d, TokenRules %q; want none", name, e.NeedsSubjects(), e.Rules(), e.TokenRules())
		}
	}
	var e *policy.Engine
	if e.Engine() != nil {
		t.Error("nil Engine's Engine() is not nil")
	}
}

// TestUnusedDenies: a deny rule whose method or service no served method
// matches (a typo) is reported, one that matches any is not, nor an allow
// rule, nor a rule for another server (at:).
func TestUnusedDenies(t *testing.T) {
	t.Parallel()
	self := spiffeid.RequireFromString("spiffe://td/ns/notes/sa/notes")
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "typo", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/sa/bob"}, To: []string{"/notes.v1.NoteServices/AddNote"}},
		{Name: "typo-service", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/*"}, To: []string{"/notes.v1.Notes/*"}},
		{Name: "real", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/sa/bob"}, To: []string{"/notes.v1.NoteService/AddNote"}},
		{Name: "service", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/sa/eve"}, To: []string{"/notes.v1.NoteService/*"}},
		{Name: "everything", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/sa/mallory"}, To: []string{"*"}},
		{Name: "elsewhere", Effect: policy.Deny, From: []string{"spiffe://td/ns/x/sa/bob"}, To: []string{"/other.v1.Other/Get"}, At: []string{"spiffe://td/ns/other/sa/other"}},
		{Name: "allow-typo", Effect: policy.Allow, From: []string{"spiffe://td/ns/x/*"}, To: []string{"/notes.v1.NoteServices/*"}},
		{Name: "users", Effect: policy.Allow, From: []string{"spiffe://td/ns/x/*"}, To: []string{"/notes.v1.NoteService/*"}},
	}}, policy.ForServer(self))
	if err != nil {
		t.Fatal(err)
	}
	served := []string{"/notes.v1.NoteService/AddNote", "/notes.v1.NoteService/ListNotes"}
	if got := e.UnusedDenies(served); !slices.Equal(got, []string{"typo", "typo-service"}) {
		t.Errorf("UnusedDenies = %q, want [typo typo-service]", got)
	}
	if got := e.UnusedDenies(nil); !slices.Equal(got, []string{"typo", "typo-service", "real", "service", "everything"}) {
		t.Errorf("UnusedDenies(none served) = %q", got)
	}
}
