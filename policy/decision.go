package policy

import "fmt"

// Outcome is what a decision does to a call.
type Outcome int

const (
	// Allowed: an allow rule matched and no deny rule did.
	Allowed Outcome = iota + 1
	// Denied: a deny rule matched, or no allow rule did (default deny).
	Denied
	// DryRunDenied: a dry-run deny rule matched (or the policy is in
	// dry-run and would have denied); the call proceeds.
	DryRunDenied
)

// String returns "allow", "deny" or "dry_run_deny", the values used in audit
// events and span attributes.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allow"
	case Denied:
		return "deny"
	case DryRunDenied:
		return "dry_run_deny"
	default:
		return fmt.Sprintf("outcome(%d)", int(o))
	}
}

// DefaultRule is the rule name a decision reports when no rule matched and
// the call was denied by default.
const DefaultRule = "default-deny"

// Decision is the result of [Engine.Decide].
type Decision struct {
	// Outcome says whether the call proceeds.
	Outcome Outcome
	// Rule names the rule that decided: the first matching deny rule, else
	// the first matching allow rule that requires a token, else the first
	// matching allow rule, else [DefaultRule]. (A dry-run denial names the
	// dry-run deny rule.)
	Rule string
	// RequireToken reports that an allow rule matching the call requires a
	// certificate-bound access token ([Rule.RequireToken]): the call may
	// proceed only if it presents a valid one. Like a deny, a token
	// requirement cannot be undone by a broader rule: any matching allow
	// rule that requires a token makes the token required. It is false when
	// no allow rule matched.
	RequireToken bool
	// NeedSubject reports a denial that a verified subject could have
	// turned into an allow: the call has none (no valid transaction
	// token), and an allow rule with [Rule.Subject] patterns matches its
	// caller and method. Servers answer it as unauthenticated rather than
	// permission denied.
	NeedSubject bool
}

// Proceed reports whether the call may go ahead (allowed, or denied only in
// dry-run).
func (d Decision) Proceed() bool { return d.Outcome == Allowed || d.Outcome == DryRunDenied }
