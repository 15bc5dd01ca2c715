package policy_test

import (
	"fmt"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

const (
	gwList  = "/shop.gateway.v1.StorefrontService/ListProducts"
	gwPlace = "/shop.gateway.v1.StorefrontService/PlaceOrder"
	charge  = "/shop.payments.v1.PaymentService/Charge"
	refund  = "/shop.payments.v1.PaymentService/Refund"
)

func allow(name string, from, to []string) policy.Rule {
	return policy.Rule{Name: name, Effect: policy.Allow, From: from, To: to}
}

func deny(name string, from, to []string) policy.Rule {
	return policy.Rule{Name: name, Effect: policy.Deny, From: from, To: to}
}

func dryRunDeny(name string, from, to []string) policy.Rule {
	r := deny(name, from, to)
	r.DryRun = true
	return r
}

func l(s ...string) []string { return s }

func compile(t testing.TB, p policy.Policy) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func TestDecide(t *testing.T) {
	t.Parallel()
	allowed := func(rule string) policy.Decision { return policy.Decision{Outcome: policy.Allowed, Rule: rule} }
	denied := func(rule string) policy.Decision { return policy.Decision{Outcome: policy.Denied, Rule: rule} }
	dryRun := func(rule string) policy.Decision { return policy.Decision{Outcome: policy.DryRunDenied, Rule: rule} }
	defaultDeny := denied(policy.DefaultRule)

	testCases := []struct {
		name   string
		policy policy.Policy
		method string
		caller string // "" is the zero ID
		want   policy.Decision
	}{
		// Exact IDs and segment boundaries.
		{"exact id", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/ns/foo"), l(gwList))}},
			gwList, "spiffe://td/ns/foo", allowed("a")},
		{"exact id is not a prefix", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/ns/foo"), l(gwList))}},
			gwList, "spiffe://td/ns/foobar", defaultDeny},
		{"exact id does not match children", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/ns/foo"), l(gwList))}},
			gwList, "spiffe://td/ns/foo/bar", defaultDeny},
		{"exact id does not match parent", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/ns/foo"), l(gwList))}},
			gwList, "spiffe://td/ns", defaultDeny},

		// One segment: *.
		{"star matches one segment", policy.Policy{Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}},
			gwList, "spiffe://td/user/alice", allowed("users")},
		{"star does not match two segments", policy.Policy{Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}},
			gwList, "spiffe://td/user/alice/x", defaultDeny},
		{"star does not match zero segments", policy.Policy{Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}},
			gwList, "spiffe://td/user", defaultDeny},
		{"star needs the segment before it", policy.Policy{Rules: []policy.Rule{allow("users", l("spiffe://td/user/*"), l(gwList))}},
			gwList, "spiffe://td/users/alice", defaultDeny},
		{"star in the middle", policy.Policy{Rules: []policy.Rule{allow("sa", l("spiffe://td/ns/*/sa/gateway"), l(gwList))}},
			gwList, "spiffe://td/ns/shop/sa/gateway", allowed("sa")},
		{"star in the middle, wrong tail", policy.Policy{Rules: []policy.Rule{allow("sa", l("spiffe://td/ns/*/sa/gateway"), l(gwList))}},
			gwList, "spiffe://td/ns/shop/sa/orders", defaultDeny},

		// One or more trailing segments: **.
		{"double star matches two segments", policy.Policy{Rules: []policy.Rule{allow("shop", l("spiffe://td/ns/shop/**"), l(gwList))}},
			gwList, "spiffe://td/ns/shop/sa/x", allowed("shop")},
		{"double star matches one segment", policy.Policy{Rules: []policy.Rule{allow("shop", l("spiffe://td/ns/shop/**"), l(gwList))}},
			gwList, "spiffe://td/ns/shop/x", allowed("shop")},
		{"double star needs a segment", policy.Policy{Rules: []policy.Rule{allow("shop", l("spiffe://td/ns/shop/**"), l(gwList))}},
			gwList, "spiffe://td/ns/shop", defaultDeny},
		{"double star on a segment boundary", policy.Policy{Rules: []policy.Rule{allow("shop", l("spiffe://td/ns/shop/**"), l(gwList))}},
			gwList, "spiffe://td/ns/shopping/x", defaultDeny},

		// Trust domains.
		{"trust domain pattern", policy.Policy{Rules: []policy.Rule{allow("td", l("spiffe://td"), l(gwList))}},
			gwList, "spiffe://td/any/thing", allowed("td")},
		{"trust domain pattern, the domain's own ID", policy.Policy{Rules: []policy.Rule{allow("td", l("spiffe://td"), l(gwList))}},
			gwList, "spiffe://td", allowed("td")},
		{"trust domain pattern, other domain", policy.Policy{Rules: []policy.Rule{allow("td", l("spiffe://td"), l(gwList))}},
			gwList, "spiffe://evil.td/any/thing", defaultDeny},
		{"trust domain pattern, domain with the same prefix", policy.Policy{Rules: []policy.Rule{allow("td", l("spiffe://td"), l(gwList))}},
			gwList, "spiffe://tdx/a", defaultDeny},
		{"exact id, other domain", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/ns/foo"), l(gwList))}},
			gwList, "spiffe://other/ns/foo", defaultDeny},
		{"star, other domain", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/*"), l(gwList))}},
			gwList, "spiffe://other/user/alice", defaultDeny},
		{"double star, other domain", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/**"), l(gwList))}},
			gwList, "spiffe://other/a", defaultDeny},

		// Deny over allow, and which rule is named.
		{"deny over allow", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			deny("no-mallory", l("spiffe://td/user/mallory"), l(gwList)),
		}}, gwList, "spiffe://td/user/mallory", denied("no-mallory")},
		{"deny does not touch others", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			deny("no-mallory", l("spiffe://td/user/mallory"), l(gwList)),
		}}, gwList, "spiffe://td/user/alice", allowed("users")},
		{"first matching allow in policy order", policy.Policy{Rules: []policy.Rule{
			allow("by-pattern", l("spiffe://td/user/*"), l(gwList)),
			allow("by-id", l("spiffe://td/user/alice"), l(gwList)),
		}}, gwList, "spiffe://td/user/alice", allowed("by-pattern")},
		{"first matching allow in policy order, exact first", policy.Policy{Rules: []policy.Rule{
			allow("by-id", l("spiffe://td/user/alice"), l(gwList)),
			allow("by-pattern", l("spiffe://td/user/*"), l(gwList)),
		}}, gwList, "spiffe://td/user/alice", allowed("by-id")},
		{"first matching allow across method patterns", policy.Policy{Rules: []policy.Rule{
			allow("everything", l("spiffe://td"), l("*")),
			allow("service", l("spiffe://td/user/*"), l("/shop.gateway.v1.StorefrontService/*")),
			allow("method", l("spiffe://td/user/alice"), l(gwList)),
		}}, gwList, "spiffe://td/user/alice", allowed("everything")},
		{"exact method rule first", policy.Policy{Rules: []policy.Rule{
			allow("method", l("spiffe://td/user/alice"), l(gwList)),
			allow("everything", l("spiffe://td"), l("*")),
		}}, gwList, "spiffe://td/user/alice", allowed("method")},
		{"first matching deny in policy order", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			deny("d1", l("spiffe://td/user/*"), l("*")),
			deny("d2", l("spiffe://td/user/mallory"), l(gwList)),
		}}, gwList, "spiffe://td/user/mallory", denied("d1")},
		{"deny declared before the allow", policy.Policy{Rules: []policy.Rule{
			deny("d", l("spiffe://td/user/mallory"), l("*")),
			allow("users", l("spiffe://td/user/*"), l(gwList)),
		}}, gwList, "spiffe://td/user/mallory", denied("d")},

		// Default deny.
		{"no rule for the caller", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/alice"), l(gwList))}},
			gwList, "spiffe://td/user/bob", defaultDeny},
		{"no rule for the method", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/alice"), l(gwList))}},
			gwPlace, "spiffe://td/user/alice", defaultDeny},
		{"unknown service", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/alice"), l("/shop.gateway.v1.StorefrontService/*"))}},
			charge, "spiffe://td/user/alice", defaultDeny},
		{"malformed method", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/alice"), l("/shop.gateway.v1.StorefrontService/*"))}},
			"ListProducts", "spiffe://td/user/alice", defaultDeny},
		{"empty policy", policy.Policy{}, gwList, "spiffe://td/user/alice", defaultDeny},
		{"zero caller", policy.Policy{Rules: []policy.Rule{allow("all", l("spiffe://td"), l("*"))}},
			gwList, "", defaultDeny},
		{"zero caller, deny rule does not name it", policy.Policy{Rules: []policy.Rule{deny("d", l("spiffe://td"), l("*"))}},
			gwList, "", defaultDeny},

		// Method patterns.
		{"service wildcard", policy.Policy{Rules: []policy.Rule{allow("svc", l("spiffe://td/user/*"), l("/shop.gateway.v1.StorefrontService/*"))}},
			gwPlace, "spiffe://td/user/alice", allowed("svc")},
		{"service wildcard, other service", policy.Policy{Rules: []policy.Rule{allow("svc", l("spiffe://td/user/*"), l("/shop.gateway.v1.StorefrontService/*"))}},
			"/shop.gateway.v2.StorefrontService/ListProducts", "spiffe://td/user/alice", defaultDeny},
		{"service wildcard, method of a service with exact rules", policy.Policy{Rules: []policy.Rule{
			allow("exact", l("spiffe://td/ns/ops/sa/admin"), l(refund)),
			allow("svc", l("spiffe://td/user/*"), l("/shop.payments.v1.PaymentService/*")),
		}}, refund, "spiffe://td/user/alice", allowed("svc")},
		{"all methods", policy.Policy{Rules: []policy.Rule{allow("admin", l("spiffe://td/ns/ops/sa/admin"), l("*"))}},
			"/grpc.health.v1.Health/Check", "spiffe://td/ns/ops/sa/admin", allowed("admin")},
		{"all methods, unknown method", policy.Policy{Rules: []policy.Rule{
			allow("exact", l("spiffe://td/user/*"), l(gwList)),
			allow("admin", l("spiffe://td/ns/ops/sa/admin"), l("*")),
		}}, "/x.Y/Z", "spiffe://td/ns/ops/sa/admin", allowed("admin")},
		{"exact method does not match another", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/user/*"), l(gwList))}},
			gwList + "s", "spiffe://td/user/alice", defaultDeny},

		// Dry-run.
		{"dry-run deny over allow", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			dryRunDeny("try-no-bob", l("spiffe://td/user/bob"), l(gwList)),
		}}, gwList, "spiffe://td/user/bob", dryRun("try-no-bob")},
		{"dry-run deny, others allowed", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			dryRunDeny("try-no-bob", l("spiffe://td/user/bob"), l(gwList)),
		}}, gwList, "spiffe://td/user/alice", allowed("users")},
		{"dry-run deny without an allow is a default deny", policy.Policy{Rules: []policy.Rule{
			dryRunDeny("try-no-bob", l("spiffe://td/user/bob"), l(gwList)),
		}}, gwList, "spiffe://td/user/bob", defaultDeny},
		{"enforced deny over dry-run deny", policy.Policy{Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			dryRunDeny("try", l("spiffe://td/user/bob"), l(gwList)),
			deny("enforced", l("spiffe://td/user/bob"), l(gwList)),
		}}, gwList, "spiffe://td/user/bob", denied("enforced")},
		{"policy dry-run, deny", policy.Policy{DryRun: true, Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
			deny("no-bob", l("spiffe://td/user/bob"), l(gwList)),
		}}, gwList, "spiffe://td/user/bob", dryRun("no-bob")},
		{"policy dry-run, default deny", policy.Policy{DryRun: true, Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
		}}, charge, "spiffe://td/user/bob", dryRun(policy.DefaultRule)},
		{"policy dry-run, allow", policy.Policy{DryRun: true, Rules: []policy.Rule{
			allow("users", l("spiffe://td/user/*"), l(gwList)),
		}}, gwList, "spiffe://td/user/bob", allowed("users")},
		{"policy dry-run, zero caller", policy.Policy{DryRun: true}, gwList, "", dryRun(policy.DefaultRule)},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := compile(t, tc.policy)
			var caller spiffeid.ID
			if tc.caller != "" {
				caller = spiffeid.RequireFromString(tc.caller)
			}
			if got := e.Decide(tc.method, caller); got != tc.want {
				t.Errorf("Decide(%q, %q) = %+v, want %+v", tc.method, tc.caller, got, tc.want)
			}
		})
	}
}

func TestDecisionProceed(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		outcome policy.Outcome
		want    bool
		str     string
	}{
		{policy.Allowed, true, "allow"},
		{policy.DryRunDenied, true, "dry_run_deny"},
		{policy.Denied, false, "deny"},
		{0, false, "outcome(0)"},
	}
	for _, tc := range testCases {
		t.Run(tc.str, func(t *testing.T) {
			t.Parallel()
			if got := (policy.Decision{Outcome: tc.outcome}).Proceed(); got != tc.want {
				t.Errorf("Proceed() = %v, want %v", got, tc.want)
			}
			if got := tc.outcome.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	e := compile(t, policy.Policy{Rules: []policy.Rule{
		allow("list", l("spiffe://td/user/*"), l(gwList)),
		allow("payments", l("spiffe://td/ns/shop/sa/orders"), l("/shop.payments.v1.PaymentService/*")),
		deny("no-place", l("spiffe://td/user/*"), l(gwPlace)),
		deny("no-health", l("spiffe://td"), l("*")),
	}})
	testCases := []struct {
		method string
		want   bool
	}{
		{gwList, true},
		{charge, true},
		{refund, true},
		{gwPlace, false}, // only a deny rule
		{"/grpc.health.v1.Health/Check", false},
		{"/shop.gateway.v1.StorefrontService/GetOrder", false},
	}
	for _, tc := range testCases {
		t.Run(tc.method, func(t *testing.T) {
			t.Parallel()
			if got := e.Covers(tc.method); got != tc.want {
				t.Errorf("Covers(%q) = %v, want %v", tc.method, got, tc.want)
			}
		})
	}

	all := compile(t, policy.Policy{Rules: []policy.Rule{allow("admin", l("spiffe://td/ns/ops/sa/admin"), l("*"))}})
	if !all.Covers("/any.Service/Method") {
		t.Error(`a "*" allow rule does not cover /any.Service/Method`)
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name   string
		policy policy.Policy
		want   string
	}{
		{"no name", policy.Policy{Source: "p.yaml", Rules: []policy.Rule{allow("", l("spiffe://td"), l("*"))}},
			"p.yaml: rule (unnamed): has no name"},
		{"name with a line break", policy.Policy{Rules: []policy.Rule{allow("a\nb", l("spiffe://td"), l("*"))}},
			`policy: rule "a\nb": name must not contain white space or control characters`},
		{"name with a control character", policy.Policy{Rules: []policy.Rule{allow("a\x00", l("spiffe://td"), l("*"))}},
			`policy: rule "a\x00": name must not contain white space or control characters`},
		{"no effect", policy.Policy{Rules: []policy.Rule{{Name: "a", From: l("spiffe://td"), To: l("*"), Source: "x:3"}}},
			"x:3: rule a: effect must be allow or deny"},
		{"no callers", policy.Policy{Rules: []policy.Rule{allow("a", nil, l("*"))}},
			"policy: rule a: has no callers (from)"},
		{"no methods", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td"), nil)}},
			"policy: rule a: has no methods (to)"},
		{"dry-run allow", policy.Policy{Rules: []policy.Rule{{Name: "a", Effect: policy.Allow, From: l("spiffe://td"), To: l("*"), DryRun: true}}},
			"policy: rule a: dry_run applies to deny rules only"},
		{"duplicate name", policy.Policy{Rules: []policy.Rule{
			{Name: "a", Effect: policy.Allow, From: l("spiffe://td"), To: l("*"), Source: "f.yaml:3"},
			{Name: "a", Effect: policy.Allow, From: l("spiffe://td"), To: l("*"), Source: "proto x.Y"},
		}}, "proto x.Y: rule a: duplicate rule name (first declared at f.yaml:3)"},
		{"bad caller", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td/a*"), l("*"))}},
			`policy: rule a: caller "spiffe://td/a*": wildcards must be a whole path segment (* or a trailing **)`},
		{"bad method", policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://td"), l("/x.Y/Z*"))}},
			`policy: rule a: method "/x.Y/Z*": method name "Z*" is not a protobuf identifier (wildcards: /package.Service/* or *)`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Compile(tc.policy)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Compile error = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestParsePatterns(t *testing.T) {
	t.Parallel()
	callers := []struct {
		pattern string
		want    string // "" if valid
	}{
		{"spiffe://td", ""},
		{"spiffe://td/a", ""},
		{"spiffe://td/*", ""},
		{"spiffe://td/**", ""},
		{"spiffe://td/a/*/b/**", ""},
		{"https://td/a", `caller "https://td/a": must start with spiffe://`},
		{"", `caller "": must start with spiffe://`},
		{"spiffe://", `caller "spiffe://": trust domain is missing`},
		{"spiffe://TD/a", `caller "spiffe://TD/a": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{"spiffe://td/", `caller "spiffe://td/": path cannot have a trailing slash`},
		{"spiffe://td/a//b", `caller "spiffe://td/a//b": path cannot contain empty segments`},
		{"spiffe://td/a//*", `caller "spiffe://td/a//*": path cannot contain empty segments`},
		{"spiffe://td/a*", `caller "spiffe://td/a*": wildcards must be a whole path segment (* or a trailing **)`},
		{"spiffe://td/**/a", `caller "spiffe://td/**/a": ** is only allowed as the last path segment`},
		{"spiffe://td/../*", `caller "spiffe://td/../*": path cannot contain dot segments`},
		{"spiffe://*", `caller "spiffe://*": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
	}
	for _, tc := range callers {
		t.Run("caller "+tc.pattern, func(t *testing.T) {
			t.Parallel()
			if err := errString(policy.ParseCaller(tc.pattern)); err != tc.want {
				t.Errorf("ParseCaller(%q) = %q, want %q", tc.pattern, err, tc.want)
			}
		})
	}
	methods := []struct {
		pattern string
		want    string
	}{
		{"*", ""},
		{"/pkg.Svc/*", ""},
		{"/pkg.v1.Svc/Method_1", ""},
		{"/Svc/M", ""},
		{"", `method "": want /package.Service/Method, /package.Service/* or *`},
		{"pkg.Svc/M", `method "pkg.Svc/M": want /package.Service/Method, /package.Service/* or *`},
		{"/pkg.Svc/", `method "/pkg.Svc/": want /package.Service/Method, /package.Service/* or *`},
		{"/*/*", `method "/*/*": service "*" is not a fully-qualified protobuf name`},
		{"/pkg..Svc/M", `method "/pkg..Svc/M": service "pkg..Svc" is not a fully-qualified protobuf name`},
		{"/pkg.Svc/M*", `method "/pkg.Svc/M*": method name "M*" is not a protobuf identifier (wildcards: /package.Service/* or *)`},
		{"/pkg.Svc/**", `method "/pkg.Svc/**": method name "**" is not a protobuf identifier (wildcards: /package.Service/* or *)`},
	}
	for _, tc := range methods {
		t.Run("method "+tc.pattern, func(t *testing.T) {
			t.Parallel()
			if err := errString(policy.ParseMethod(tc.pattern)); err != tc.want {
				t.Errorf("ParseMethod(%q) = %q, want %q", tc.pattern, err, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDecideAllocs checks that a decision allocates nothing, whichever way
// it goes and however big the policy. It is not parallel: AllocsPerRun
// refuses to run in a parallel test.
func TestDecideAllocs(t *testing.T) {
	for _, n := range []int{100, 1000} {
		var rules []policy.Rule
		for i := range n {
			switch i % 4 {
			case 0:
				rules = append(rules, allow(fmt.Sprintf("exact%d", i), l(fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", i)), l(fmt.Sprintf("/bench.v1.S%d/M", i), fmt.Sprintf("/bench.v1.S%d/N", i))))
			case 1:
				rules = append(rules, allow(fmt.Sprintf("star%d", i), l(fmt.Sprintf("spiffe://td/team%d/*", i)), l(fmt.Sprintf("/bench.v1.S%d/*", i))))
			case 2:
				rules = append(rules, deny(fmt.Sprintf("deny%d", i), l(fmt.Sprintf("spiffe://td/team%d/**", i)), l(fmt.Sprintf("/bench.v1.S%d/M", i-2))))
			case 3:
				rules = append(rules, dryRunDeny(fmt.Sprintf("dry%d", i), l(fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", i-3)), l(fmt.Sprintf("/bench.v1.S%d/N", i-3))))
			}
		}
		rules = append(rules,
			allow("users", l("spiffe://td/user/*"), l("*")),
			deny("no-mallory", l("spiffe://td/user/mallory"), l("*")))
		e := compile(t, policy.Policy{Rules: rules})
		last := (n - 1) / 4 * 4
		testCases := []struct {
			name   string
			method string
			caller string
			want   policy.Outcome
		}{
			{"allow exact", fmt.Sprintf("/bench.v1.S%d/M", last), fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", last), policy.Allowed},
			{"allow pattern", fmt.Sprintf("/bench.v1.S%d/X", last+1), fmt.Sprintf("spiffe://td/team%d/x", last+1), policy.Allowed},
			{"allow global", "/other.v1.S/M", "spiffe://td/user/alice", policy.Allowed},
			{"deny", fmt.Sprintf("/bench.v1.S%d/M", n-6), fmt.Sprintf("spiffe://td/team%d/a/b", n-4), policy.Denied},
			{"deny global", "/other.v1.S/M", "spiffe://td/user/mallory", policy.Denied},
			{"dry-run deny", fmt.Sprintf("/bench.v1.S%d/N", n-4), fmt.Sprintf("spiffe://td/ns/shop/sa/svc%d", n-4), policy.DryRunDenied},
			{"default deny", fmt.Sprintf("/bench.v1.S%d/M", last), "spiffe://td/ns/shop/sa/nobody", policy.Denied},
			{"default deny unknown method", "/unknown.v1.S/M", "spiffe://other/x", policy.Denied},
		}
		for _, tc := range testCases {
			t.Run(fmt.Sprintf("%d rules/%s", n, tc.name), func(t *testing.T) {
				caller := spiffeid.RequireFromString(tc.caller)
				if got := e.Decide(tc.method, caller); got.Outcome != tc.want {
					t.Fatalf("Decide = %+v, want outcome %v", got, tc.want)
				}
				if allocs := testing.AllocsPerRun(100, func() { e.Decide(tc.method, caller) }); allocs != 0 {
					t.Errorf("Decide allocates %v times per call, want 0", allocs)
				}
			})
		}
	}
}
