package policy_test

import (
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

func tokenAllow(name string, from, to []string) policy.Rule {
	r := allow(name, from, to)
	r.RequireToken = true
	return r
}

func TestDecideRequireToken(t *testing.T) {
	t.Parallel()
	const (
		alice = "spiffe://td/user/alice"
		bob   = "spiffe://td/user/bob"
	)
	testCases := []struct {
		name   string
		rules  []policy.Rule
		method string
		caller string
		want   policy.Decision
	}{
		{"token rule decides", []policy.Rule{tokenAllow("alice-tok", l(alice), l(gwPlace))},
			gwPlace, alice, policy.Decision{Outcome: policy.Allowed, Rule: "alice-tok", RequireToken: true}},
		{"another caller is not affected", []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwPlace)), tokenAllow("alice-tok", l(alice), l(gwPlace))},
			gwPlace, bob, policy.Decision{Outcome: policy.Allowed, Rule: "users"}},
		{"another method is not affected", []policy.Rule{allow("users", l("spiffe://td/user/*"), l("/shop.gateway.v1.StorefrontService/*")), tokenAllow("alice-tok", l(alice), l(gwPlace))},
			gwList, alice, policy.Decision{Outcome: policy.Allowed, Rule: "users"}},
		// A broader allow rule earlier in the policy does not lift the
		// requirement, whatever the order.
		{"broader allow first", []policy.Rule{allow("users", l("spiffe://td/user/*"), l("*")), tokenAllow("alice-tok", l(alice), l(gwPlace))},
			gwPlace, alice, policy.Decision{Outcome: policy.Allowed, Rule: "alice-tok", RequireToken: true}},
		{"broader allow last", []policy.Rule{tokenAllow("alice-tok", l(alice), l(gwPlace)), allow("users", l("spiffe://td/user/*"), l("*"))},
			gwPlace, alice, policy.Decision{Outcome: policy.Allowed, Rule: "alice-tok", RequireToken: true}},
		{"token rule by service wildcard", []policy.Rule{allow("alice", l(alice), l(gwPlace)), tokenAllow("users-tok", l("spiffe://td/user/*"), l("/shop.gateway.v1.StorefrontService/*"))},
			gwPlace, alice, policy.Decision{Outcome: policy.Allowed, Rule: "users-tok", RequireToken: true}},
		{"first token rule is named", []policy.Rule{tokenAllow("t1", l("spiffe://td/user/*"), l("*")), tokenAllow("t2", l(alice), l(gwPlace))},
			gwPlace, alice, policy.Decision{Outcome: policy.Allowed, Rule: "t1", RequireToken: true}},
		{"deny wins over a token rule", []policy.Rule{tokenAllow("alice-tok", l(alice), l(gwPlace)), deny("no-alice", l(alice), l("*"))},
			gwPlace, alice, policy.Decision{Outcome: policy.Denied, Rule: "no-alice"}},
		{"dry-run deny keeps the requirement", []policy.Rule{tokenAllow("alice-tok", l(alice), l(gwPlace)), dryRunDeny("try-no-alice", l(alice), l("*"))},
			gwPlace, alice, policy.Decision{Outcome: policy.DryRunDenied, Rule: "try-no-alice", RequireToken: true}},
		{"no allow, no token", []policy.Rule{tokenAllow("alice-tok", l(alice), l(gwPlace))},
			gwPlace, bob, policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := compile(t, policy.Policy{Rules: tc.rules})
			if got := e.Decide(tc.method, spiffeid.RequireFromString(tc.caller)); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTokenRules(t *testing.T) {
	t.Parallel()
	p := policy.Policy{Rules: []policy.Rule{
		allow("users", l("spiffe://td/user/*"), l("*")),
		tokenAllow("everywhere", l("spiffe://td/user/alice"), l(gwPlace)),
		tokenAllow("on-gateway", l("spiffe://td/user/alice"), l(gwList)),
	}}
	p.Rules[2].At = l("spiffe://td/ns/shop/sa/gateway")
	gateway, err := policy.Compile(p, policy.ForServer(spiffeid.RequireFromString("spiffe://td/ns/shop/sa/gateway")))
	if err != nil {
		t.Fatal(err)
	}
	orders, err := policy.Compile(p, policy.ForServer(spiffeid.RequireFromString("spiffe://td/ns/shop/sa/orders")))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gateway.TokenRules(), []string{"everywhere", "on-gateway"}; !reflect.DeepEqual(got, want) {
		t.Errorf("gateway TokenRules() = %q, want %q", got, want)
	}
	if got, want := orders.TokenRules(), []string{"everywhere"}; !reflect.DeepEqual(got, want) {
		t.Errorf("orders TokenRules() = %q, want %q", got, want)
	}
	if got := compile(t, policy.Policy{Rules: p.Rules[:1]}).TokenRules(); got != nil {
		t.Errorf("TokenRules() of a policy without token rules = %q, want nil", got)
	}
}

func TestCompileRequireTokenOnDeny(t *testing.T) {
	t.Parallel()
	r := deny("no-mallory", l("spiffe://td/user/mallory"), l("*"))
	r.RequireToken = true
	r.Source = "p.yaml:3"
	_, err := policy.Compile(policy.Policy{Rules: []policy.Rule{r}})
	if want := "p.yaml:3: rule no-mallory: require_token applies to allow rules only"; errString(err) != want {
		t.Errorf("Compile error = %q, want %q", errString(err), want)
	}
}

func TestLoadFileRequireToken(t *testing.T) {
	t.Parallel()
	const path = "testdata/good-require-token.yaml"
	p, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, r := range p.Rules {
		got = append(got, r.RequireToken)
	}
	if want := []bool{false, true, false}; !reflect.DeepEqual(got, want) {
		t.Fatalf("RequireToken of each rule = %v, want %v", got, want)
	}
	e := compile(t, p)
	for caller, want := range map[string]policy.Decision{
		"spiffe://shop.example/user/alice": {Outcome: policy.Allowed, Rule: "alice-orders-with-token", RequireToken: true},
		"spiffe://shop.example/user/bob":   {Outcome: policy.Allowed, Rule: "users-call-storefront"},
	} {
		if got := e.Decide(gwPlace, spiffeid.RequireFromString(caller)); got != want {
			t.Errorf("Decide(%s, %s) = %+v, want %+v", gwPlace, caller, got, want)
		}
	}
}

// TestDecideRequireTokenAllocs: a policy with token rules still decides
// without allocating. Not parallel: AllocsPerRun refuses to run in a
// parallel test.
func TestDecideRequireTokenAllocs(t *testing.T) {
	e := compile(t, policy.Policy{Rules: []policy.Rule{
		allow("users", l("spiffe://td/user/*"), l("*")),
		tokenAllow("alice-tok", l("spiffe://td/user/alice"), l(gwPlace)),
	}})
	for _, caller := range []string{"spiffe://td/user/alice", "spiffe://td/user/bob"} {
		id := spiffeid.RequireFromString(caller)
		if n := testing.AllocsPerRun(100, func() { e.Decide(gwPlace, id) }); n != 0 {
			t.Errorf("Decide for %s allocates %v times per call, want 0", caller, n)
		}
	}
}
