package policy_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

const subjectPolicy = `version: 1
txn_issuers: ["spiffe://example.org/ns/app/sa/edge"]
rules:
  - name: edge-for-users
    effect: allow
    from: ["spiffe://example.org/ns/app/sa/edge"]
    to: ["/app.v1.Orders/*"]
    subject: ["spiffe://example.org/user/*"]
  - name: batch-any-time
    effect: allow
    from: ["spiffe://example.org/ns/app/sa/batch"]
    to: ["/app.v1.Orders/List"]
  - name: batch-for-users
    effect: allow
    from: ["spiffe://example.org/ns/app/sa/batch"]
    to: ["/app.v1.Orders/*"]
    subject: ["spiffe://example.org/user/*"]
`

func TestDecideForSubject(t *testing.T) { // not parallel: AllocsPerRun
	p, err := policy.Parse("subject.yaml", []byte(subjectPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString
	var none spiffeid.ID
	edge, batch, other := id("spiffe://example.org/ns/app/sa/edge"), id("spiffe://example.org/ns/app/sa/batch"), id("spiffe://example.org/ns/app/sa/other")
	alice, svc := id("spiffe://example.org/user/alice"), id("spiffe://example.org/ns/app/sa/other")
	testCases := []struct {
		name            string
		method          string
		caller, subject spiffeid.ID
		want            policy.Decision
	}{
		{"edge for a user", "/app.v1.Orders/Create", edge, alice, policy.Decision{Outcome: policy.Allowed, Rule: "edge-for-users"}},
		{"edge without a subject", "/app.v1.Orders/Create", edge, none, policy.Decision{Outcome: policy.Denied, Rule: "edge-for-users", NeedSubject: true}},
		{"edge for a workload subject", "/app.v1.Orders/Create", edge, svc, policy.Decision{Outcome: policy.Denied, Rule: "edge-for-users"}},
		{"batch plain rule needs no subject", "/app.v1.Orders/List", batch, none, policy.Decision{Outcome: policy.Allowed, Rule: "batch-any-time"}},
		{"batch plain rule comes first", "/app.v1.Orders/List", batch, alice, policy.Decision{Outcome: policy.Allowed, Rule: "batch-any-time"}},
		{"batch subject rule", "/app.v1.Orders/Create", batch, alice, policy.Decision{Outcome: policy.Allowed, Rule: "batch-for-users"}},
		{"batch without subject elsewhere", "/app.v1.Orders/Create", batch, none, policy.Decision{Outcome: policy.Denied, Rule: "batch-for-users", NeedSubject: true}},
		{"a subject lifts nothing for another caller", "/app.v1.Orders/Create", other, alice, policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
	}
	for _, tc := range testCases {
		if got := e.DecideFor(tc.method, tc.caller, tc.subject); got != tc.want {
			t.Errorf("%s: DecideFor = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := e.TxnIssuers(); len(got) != 1 || got[0] != edge {
		t.Errorf("TxnIssuers = %v, want [%s]", got, edge)
	}
	if !e.NeedsSubjects() || !e.Covers("/app.v1.Orders/Create") {
		t.Errorf("NeedsSubjects = %v, Covers(Create) = %v; want both true", e.NeedsSubjects(), e.Covers("/app.v1.Orders/Create"))
	}
	if n := testing.AllocsPerRun(1000, func() { e.DecideFor("/app.v1.Orders/Create", batch, alice) }); n != 0 {
		t.Errorf("DecideFor: %v allocs, want 0", n)
	}
}

func TestSubjectErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name, file, want string
	}{
		{"subject on a deny rule", `version: 1
rules:
  - name: no-mallory
    effect: deny
    from: ["spiffe://example.org/ns/app/sa/edge"]
    to: ["*"]
    subject: ["spiffe://example.org/user/mallory"]
`, "f:7: rule no-mallory: subject applies to allow rules only (a caller could escape a deny rule by sending no token)"},
		{"empty subject", `version: 1
rules:
  - name: users
    effect: allow
    from: ["spiffe://example.org/ns/app/sa/edge"]
    to: ["*"]
    subject: []
`, "f:7: rule users: subject is empty (leave it out to ignore the subject)"},
		{"bad subject pattern", `version: 1
rules:
  - name: users
    effect: allow
    from: ["spiffe://example.org/ns/app/sa/edge"]
    to: ["*"]
    subject: ["https://example.org/user/*"]
`, ""},
		{"bad txn issuer", `version: 1
txn_issuers: ["spiffe://Example.org/edge"]
rules: []
`, ""},
	}
	for _, tc := range testCases {
		_, err := policy.Parse("f", []byte(tc.file))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if tc.want != "" && err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
	}
}

// TestSubjectTokenRule: a subject rule that requires a token makes the
// token required only for calls its subject patterns match (a caller's
// other allow rules decide the rest, with no token).
func TestSubjectTokenRule(t *testing.T) { // not parallel: AllocsPerRun
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "plain", Effect: policy.Allow, From: []string{"spiffe://example.org/a"}, To: []string{"/app.v1.Orders/*"}},
		{Name: "subj-token", Effect: policy.Allow, From: []string{"spiffe://example.org/a"}, To: []string{"/app.v1.Orders/*"},
			Subject: []string{"spiffe://example.org/user/bob"}, RequireToken: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, bob, alice := spiffeid.RequireFromString("spiffe://example.org/a"), spiffeid.RequireFromString("spiffe://example.org/user/bob"), spiffeid.RequireFromString("spiffe://example.org/user/alice")
	for _, tc := range []struct {
		subject spiffeid.ID
		want    policy.Decision
	}{
		{spiffeid.ID{}, policy.Decision{Outcome: policy.Allowed, Rule: "plain"}},
		{alice, policy.Decision{Outcome: policy.Allowed, Rule: "plain"}},
		{bob, policy.Decision{Outcome: policy.Allowed, Rule: "subj-token", RequireToken: true}},
	} {
		if got := e.DecideFor("/app.v1.Orders/Create", a, tc.subject); got != tc.want {
			t.Errorf("DecideFor(subject %v) = %+v, want %+v", tc.subject, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { e.DecideFor("/app.v1.Orders/Create", a, bob) }); n != 0 {
		t.Errorf("DecideFor with a subject: %v allocs, want 0", n)
	}
}
