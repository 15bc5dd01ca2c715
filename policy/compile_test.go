package policy_test

import (
	"fmt"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// generatedRules returns n rules shaped like a big real policy: each names
// its own service, so there are about as many exact methods and service
// wildcards as rules. Rule i is, by i%5:
//
//	0: allow spiffe://td/ns/shop/sa/svcI  to /gen.v1.SI/M and /gen.v1.SI/N
//	1: allow spiffe://td/teamI/*          to /gen.v1.SI/*
//	2: deny  spiffe://td/teamI/**         to /gen.v1.S(I-1)/Get
//	3: deny  (dry run) spiffe://td/ns/shop/sa/svc(I-3) to /gen.v1.S(I-3)/N
//	4: allow spiffe://td/ns/shop/sa/svcI  to /gen.v1.S(I-4)/M, with at
//	   spiffe://td/ns/shop/sa/server (applies only there)
//
// and two global rules follow: users may call everything, mallory nothing.
func generatedRules(n int) []policy.Rule {
	rules := make([]policy.Rule, 0, n+2)
	for i := range n {
		var r policy.Rule
		switch i % 5 {
		case 0:
			r = allow(fmt.Sprintf("exact%d", i), l(fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", i)),
				l(fmt.Sprintf("/gen.v1.S%d/M", i), fmt.Sprintf("/gen.v1.S%d/N", i)))
		case 1:
			r = allow(fmt.Sprintf("service%d", i), l(fmt.Sprintf("spiffe://td/team%d/*", i)), l(fmt.Sprintf("/gen.v1.S%d/*", i)))
		case 2:
			r = deny(fmt.Sprintf("deny%d", i), l(fmt.Sprintf("spiffe://td/team%d/**", i)), l(fmt.Sprintf("/gen.v1.S%d/Get", i-1)))
		case 3:
			r = dryRunDeny(fmt.Sprintf("dry%d", i), l(fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", i-3)), l(fmt.Sprintf("/gen.v1.S%d/N", i-3)))
		case 4:
			r = allow(fmt.Sprintf("at%d", i), l(fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", i)), l(fmt.Sprintf("/gen.v1.S%d/M", i-4)))
			r.At = l("spiffe://td/ns/shop/sa/server")
		}
		rules = append(rules, r)
	}
	return append(rules,
		allow("users", l("spiffe://td/user/*"), l("*")),
		deny("no-mallory", l("spiffe://td/user/mallory"), l("*")))
}

var server = spiffeid.RequireFromString("spiffe://td/ns/shop/sa/server")

// TestCompileGenerated compiles 50,000 rules and checks decisions that
// depend on rules from the start, the middle and the end of the policy, on
// every kind of index entry: exact method, service wildcard, global, At.
func TestCompileGenerated(t *testing.T) {
	t.Parallel()
	const n = 50_000
	e, err := policy.Compile(policy.Policy{Rules: generatedRules(n)}, policy.ForServer(server))
	if err != nil {
		t.Fatal(err)
	}
	if e.Rules() != n+2 {
		t.Errorf("Rules() = %d, want %d", e.Rules(), n+2)
	}
	testCases := []struct {
		method, caller string
		want           policy.Decision
	}{
		{"/gen.v1.S0/M", "spiffe://td/ns/shop/sa/svc0", policy.Decision{Outcome: policy.Allowed, Rule: "exact0"}},
		{"/gen.v1.S25000/N", "spiffe://td/ns/shop/sa/svc25000", policy.Decision{Outcome: policy.DryRunDenied, Rule: "dry25003"}},
		{"/gen.v1.S49995/M", "spiffe://td/ns/shop/sa/svc49995", policy.Decision{Outcome: policy.Allowed, Rule: "exact49995"}},
		{"/gen.v1.S49995/M", "spiffe://td/ns/shop/sa/svc49999", policy.Decision{Outcome: policy.Allowed, Rule: "at49999"}},
		{"/gen.v1.S49995/M", "spiffe://td/ns/shop/sa/svc0", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{"/gen.v1.S12346/Anything", "spiffe://td/team12346/x", policy.Decision{Outcome: policy.Allowed, Rule: "service12346"}},
		{"/gen.v1.S12346/Get", "spiffe://td/team12347/x/y", policy.Decision{Outcome: policy.Denied, Rule: "deny12347"}},
		{"/gen.v1.S12346/Get", "spiffe://td/team12346/x", policy.Decision{Outcome: policy.Allowed, Rule: "service12346"}},
		{"/gen.v1.S12346/Get", "spiffe://td/user/alice", policy.Decision{Outcome: policy.Allowed, Rule: "users"}},
		{"/gen.v1.S12346/Get", "spiffe://td/user/mallory", policy.Decision{Outcome: policy.Denied, Rule: "no-mallory"}},
		{"/gen.v1.S40000/M", "spiffe://td/user/mallory", policy.Decision{Outcome: policy.Denied, Rule: "no-mallory"}},
		{"/other.v1.S/M", "spiffe://td/user/bob", policy.Decision{Outcome: policy.Allowed, Rule: "users"}},
		{"/other.v1.S/M", "spiffe://td/ns/shop/sa/svc0", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
	}
	for _, tc := range testCases {
		if got := e.Decide(tc.method, spiffeid.RequireFromString(tc.caller)); got != tc.want {
			t.Errorf("Decide(%s, %s) = %+v, want %+v", tc.method, tc.caller, got, tc.want)
		}
	}
	// Without ForServer, the rules with an At list apply nowhere.
	elsewhere, err := policy.Compile(policy.Policy{Rules: generatedRules(n)})
	if err != nil {
		t.Fatal(err)
	}
	if got := elsewhere.Decide("/gen.v1.S49995/M", spiffeid.RequireFromString("spiffe://td/ns/shop/sa/svc49999")); got.Outcome != policy.Denied {
		t.Errorf("an At rule applies on another server: %+v", got)
	}
}

// BenchmarkCompile compiles generated policies (see generatedRules) of 1k,
// 10k and 50k rules; run it with -benchmem. Compile time and memory grow
// linearly with the rule count.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 50_000} {
		p := policy.Policy{Rules: generatedRules(n)}
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.Compile(p, policy.ForServer(server)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecide decides on a compiled 10k-rule policy: an exact method,
// a service wildcard and a method only the global rules cover.
func BenchmarkDecide(b *testing.B) {
	e, err := policy.Compile(policy.Policy{Rules: generatedRules(10_000)}, policy.ForServer(server))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct{ name, method, caller string }{
		{"exact", "/gen.v1.S5000/M", "spiffe://td/ns/shop/sa/svc5000"},
		{"service", "/gen.v1.S5001/X", "spiffe://td/team5001/x"},
		{"global", "/other.v1.S/M", "spiffe://td/user/alice"},
		{"default-deny", "/gen.v1.S5000/M", "spiffe://td/ns/shop/sa/nobody"},
	}
	for _, c := range cases {
		caller := spiffeid.RequireFromString(c.caller)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(c.method, caller)
			}
		})
	}
}

// TestCompileOptionErrors: ForServer with the zero ID is an error, not a
// policy compiled for nobody.
func TestCompileOptionErrors(t *testing.T) {
	t.Parallel()
	if _, err := policy.Compile(policy.Policy{}, policy.ForServer(spiffeid.ID{})); err == nil ||
		err.Error() != "policy: ForServer: the zero SPIFFE ID (name the server the policy is compiled for)" {
		t.Errorf("ForServer(zero): %v", err)
	}
	if _, err := policy.Compile(policy.Policy{}, nil); err == nil || err.Error() != "policy: Compile: nil option" {
		t.Errorf("nil option: %v", err)
	}
}
