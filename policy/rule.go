package policy

import "fmt"

// Effect is what a rule does to the calls it matches.
type Effect int

const (
	// Allow lets matching calls through, unless a deny rule also matches.
	Allow Effect = iota + 1
	// Deny refuses matching calls, whatever allow rules say.
	Deny
)

// String returns "allow" or "deny".
func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	default:
		return fmt.Sprintf("effect(%d)", int(e))
	}
}

// ParseEffect parses "allow" or "deny".
func ParseEffect(s string) (Effect, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	default:
		return 0, fmt.Errorf("effect %q: want allow or deny", s)
	}
}

// Rule is one authorization rule, as written in a policy file or declared
// in proto options.
type Rule struct {
	// Name identifies the rule in decisions, audit events and errors; it is
	// unique within a policy.
	Name string
	// Effect is Allow or Deny.
	Effect Effect
	// From lists caller patterns (see the package doc); at least one.
	From []string
	// To lists method patterns (see the package doc); at least one.
	To []string
	// At, when set, limits the rule to servers whose own SPIFFE ID matches
	// one of these caller-style patterns (e.g. only the gateway serves
	// reflection to people). Such a rule applies only in an engine compiled
	// [ForServer] a matching ID; empty means every server.
	At []string
	// DryRun, on a deny rule, reports its denials as DryRunDenied and lets
	// the calls through. It is not allowed on allow rules.
	DryRun bool
	// RequireToken, on an allow rule, also requires the calls it matches to
	// present a valid access token bound to the caller's certificate (see
	// [Decision.RequireToken]). It is not allowed on deny rules. By default
	// a rule requires no token.
	RequireToken bool
	// Source says where the rule was declared, for errors, e.g.
	// "policy.yaml:12" or "proto shop.orders.v1.OrderService".
	Source string
}

// Policy is a set of rules.
type Policy struct {
	// Rules are evaluated as described in the package doc; their order
	// decides which rule a decision names when several match.
	Rules []Rule
	// DryRun puts the whole policy in dry-run: every denial, default deny
	// included, is reported as DryRunDeny and the call proceeds.
	DryRun bool
	// Source names where the policy came from (a file name), for errors.
	Source string
}

// Merge returns a policy with the rules of p followed by those of others.
// The result is in dry-run if any input is; duplicate rule names are caught
// by [Compile].
func Merge(p Policy, others ...Policy) Policy {
	out := Policy{Rules: append([]Rule(nil), p.Rules...), DryRun: p.DryRun, Source: p.Source}
	for _, o := range others {
		out.Rules = append(out.Rules, o.Rules...)
		out.DryRun = out.DryRun || o.DryRun
	}
	return out
}
