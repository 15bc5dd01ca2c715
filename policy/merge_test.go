package policy_test

import (
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// TestMergeDryRunInputStaysItsOwn proves that merging a dry-run policy into
// an enforcing one does not put the enforcing one in dry-run: its denials,
// the default one included, are still enforced, and only the dry-run
// input's deny rules report without refusing.
func TestMergeDryRunInputStaysItsOwn(t *testing.T) {
	t.Parallel()
	const (
		users  = "spiffe://td/user/*"
		evil   = "spiffe://td/user/mallory"
		orders = "spiffe://td/ns/shop/sa/orders"
	)
	enforce := policy.Policy{Source: "file.yaml", Rules: []policy.Rule{
		allow("users", l(users), l(gwList)),
		deny("no-mallory", l(evil), l("*")),
		allow("orders-charge", l(orders), l(charge)),
	}}
	trial := policy.Policy{DryRun: true, Source: "trial", Rules: []policy.Rule{
		deny("trial-no-charge", l(orders), l(charge)),
	}}
	merged := policy.Merge(enforce, trial)
	if merged.DryRun {
		t.Fatal("Merge(enforcing, dry-run).DryRun = true: the enforcing policy's denials would not be enforced")
	}
	if trial.Rules[0].DryRun {
		t.Fatal("Merge changed its input's rules")
	}
	e := compile(t, merged)
	testCases := []struct {
		name, method, caller string
		want                 policy.Decision
	}{
		{"enforcing deny rule", gwList, evil, policy.Decision{Outcome: policy.Denied, Rule: "no-mallory"}},
		{"enforcing default deny", refund, "spiffe://td/user/alice", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{"enforcing allow", gwList, "spiffe://td/user/alice", policy.Decision{Outcome: policy.Allowed, Rule: "users"}},
		{"dry-run input's deny rule", charge, orders, policy.Decision{Outcome: policy.DryRunDenied, Rule: "trial-no-charge"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := e.Decide(tc.method, spiffeid.RequireFromString(tc.caller)); got != tc.want {
				t.Fatalf("Decide(%s, %s) = %+v, want %+v", tc.method, tc.caller, got, tc.want)
			}
		})
	}
}

// TestMergeDryRunAllowRefused proves that an allow rule of a dry-run policy
// merged into an enforcing one is refused by Compile, rather than granting
// for real what its policy only tried out.
func TestMergeDryRunAllowRefused(t *testing.T) {
	t.Parallel()
	enforce := policy.Policy{Source: "file.yaml", Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}}
	trial := policy.Policy{DryRun: true, Source: "trial", Rules: []policy.Rule{allow("everyone", l("spiffe://td"), l("*"))}}
	_, err := policy.Compile(policy.Merge(enforce, trial))
	const want = "trial: rule everyone: an allow rule of a dry-run policy merged into an enforcing one would allow for real (see policy.Merge)"
	if err == nil || err.Error() != want {
		t.Fatalf("Compile(Merge(enforcing, dry-run allow)) error = %v, want %q", err, want)
	}
}

// TestMergeDryRunFirst proves that the first policy's dry-run covers the
// merged policy, whose other inputs' rules are left as they are.
func TestMergeDryRunFirst(t *testing.T) {
	t.Parallel()
	file := policy.Policy{DryRun: true, Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}}
	base := policy.Policy{Rules: []policy.Rule{allow("health", l("spiffe://td"), l("/grpc.health.v1.Health/*"))}}
	merged := policy.Merge(file, base)
	if !merged.DryRun {
		t.Fatal("Merge(dry-run, enforcing).DryRun = false, want the first policy's")
	}
	if want := []policy.Rule{file.Rules[0], base.Rules[0]}; !reflect.DeepEqual(merged.Rules, want) {
		t.Fatalf("rules = %+v, want %+v", merged.Rules, want)
	}
	e := compile(t, merged)
	if got, want := e.Decide(refund, spiffeid.RequireFromString("spiffe://td/user/alice")), (policy.Decision{Outcome: policy.DryRunDenied, Rule: policy.DefaultRule}); got != want {
		t.Fatalf("Decide = %+v, want %+v", got, want)
	}
}

// TestMergeDryRunTxnIssuers proves that a dry-run input's txn_issuers are
// not trusted by an enforcing merged policy: they would let the enforcing
// policy's subject rules allow on a subject it never trusted.
func TestMergeDryRunTxnIssuers(t *testing.T) {
	t.Parallel()
	enforce := policy.Policy{TxnIssuers: []string{"spiffe://td/gateway"}}
	trial := policy.Policy{DryRun: true, TxnIssuers: []string{"spiffe://td/other"}}
	enforcing := policy.Policy{TxnIssuers: []string{"spiffe://td/edge"}}
	got := policy.Merge(enforce, trial, enforcing).TxnIssuers
	if want := []string{"spiffe://td/gateway", "spiffe://td/edge"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("TxnIssuers = %q, want %q", got, want)
	}
}

// TestMergeSource proves that a merged rule declared without a Source is
// named in errors by its own policy's Source, not by the first policy's.
func TestMergeSource(t *testing.T) {
	t.Parallel()
	file := policy.Policy{Source: "file.yaml", Rules: []policy.Rule{allow("a", l("spiffe://td"), l(gwList))}}
	base := policy.Policy{Source: "base", Rules: []policy.Rule{allow("a", l("spiffe://td"), l(charge))}}
	_, err := policy.Compile(policy.Merge(file, base))
	const want = "base: rule a: duplicate rule name (first declared at file.yaml)"
	if err == nil || err.Error() != want {
		t.Fatalf("Compile error = %v, want %q", err, want)
	}
}
