package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

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
	// Subject, on an allow rule, lists patterns (the language of From) for
	// the verified subject of the call: who the transaction is for, proven
	// by a transaction token minted at the edge by one of the policy's
	// [Policy.TxnIssuers]. Such a rule matches only a call whose subject
	// matches; a call without a verified subject that only such rules
	// would allow is refused as unauthenticated (see
	// [Decision.NeedSubject]). Not allowed on deny rules (a caller could
	// escape them by sending no token). Empty: the rule does not look at
	// the subject.
	Subject []string
	// Source says where the rule was declared, for errors, e.g.
	// "policy.yaml:12" or "proto shop.orders.v1.OrderService".
	Source string

	// mergedDryRun marks a rule that [Merge] put in dry-run because its
	// policy was, so that [Compile] can say why an allow rule is refused.
	mergedDryRun bool
}

// Policy is a set of rules.
type Policy struct {
	// Rules are evaluated as described in the package doc; their order
	// decides which rule a decision names when several match.
	Rules []Rule
	// DryRun puts the whole policy in dry-run: every denial, default deny
	// included, is reported as DryRunDenied and the call proceeds. Merged
	// into another policy, it covers this policy's own rules only (see
	// [Merge]).
	DryRun bool
	// Source names where the policy came from (a file name), for errors.
	Source string
	// TxnIssuers lists the SPIFFE IDs of the workloads whose transaction
	// tokens are trusted to say who a call is for (the edge that mints
	// them); see [Rule.Subject]. Empty: no token's subject is trusted.
	TxnIssuers []string
}

// Merge returns a policy with the rules of p followed by those of others;
// duplicate rule names are caught by [Compile]. The first policy is in
// charge: the result is in dry-run (the whole of it) if and only if p is,
// and a dry-run input among others never puts the result in dry-run, so
// that it cannot lift the denials of p or of another input.
//
// When p is not in dry-run, every rule of a dry-run input among others is
// put in dry-run ([Rule.DryRun]): its deny rules report their denials and
// let the calls through, as they did in their own policy. Its allow rules
// would grant for real what their policy only tried out, so [Compile]
// refuses them. Its TxnIssuers are left out: they would let the subject
// rules of enforcing inputs allow on subjects that no enforcing policy
// trusts.
//
// A rule of others with no Source gets its policy's, so that errors name
// where it was declared. The inputs are not modified.
func Merge(p Policy, others ...Policy) Policy {
	out := Policy{Rules: append([]Rule(nil), p.Rules...), DryRun: p.DryRun, Source: p.Source,
		TxnIssuers: append([]string(nil), p.TxnIssuers...)}
	for _, o := range others {
		start := len(out.Rules)
		out.Rules = append(out.Rules, o.Rules...)
		dryRun := o.DryRun && !p.DryRun
		for i := range out.Rules[start:] {
			r := &out.Rules[start+i]
			if r.Source == "" {
				r.Source = o.Source // not p's, which Compile would name
			}
			if dryRun {
				r.DryRun, r.mergedDryRun = true, true
			}
		}
		if dryRun {
			continue
		}
		for _, id := range o.TxnIssuers {
			if !slices.Contains(out.TxnIssuers, id) {
				out.TxnIssuers = append(out.TxnIssuers, id)
			}
		}
	}
	return out
}

// parsedRule is a rule that passed [checkRule], with its patterns parsed.
type parsedRule struct {
	callers  []callerPattern
	methods  []methodPattern
	at       []callerPattern
	subjects []callerPattern
}

// ruleError is what is wrong with one field of a rule. Its text is the
// problem alone; the caller names the rule and where it was declared.
type ruleError struct {
	// field is the field at fault, as it is named in a file: "name",
	// "effect", "from", "to", "at", "subject", "dry_run" or
	// "require_token".
	field string
	// entry is the index of the pattern at fault in From, To or At, or -1
	// when the problem is with the field as a whole.
	entry int
	err   error
}

func (e *ruleError) Error() string { return e.err.Error() }

func (e *ruleError) Unwrap() error { return e.err }

// checkRule checks r on its own, not against the other rules of its policy
// (see [ruleNames] for that), and parses its patterns. It is the one place
// where the rules of a rule are enforced: [Parse], [Compile] and
// [FromServices] all use it.
func checkRule(r Rule) (parsedRule, error) {
	fail := func(field string, entry int, err error) (parsedRule, error) {
		return parsedRule{}, &ruleError{field: field, entry: entry, err: err}
	}
	switch {
	case r.Name == "":
		return fail("name", -1, errors.New("has no name"))
	case !validName(r.Name):
		return fail("name", -1, errRuleName)
	case r.Effect != Allow && r.Effect != Deny:
		return fail("effect", -1, errors.New("effect must be allow or deny"))
	case len(r.From) == 0:
		return fail("from", -1, errors.New("has no callers (from)"))
	case len(r.To) == 0:
		return fail("to", -1, errors.New("has no methods (to)"))
	}
	var pr parsedRule
	var err error
	if pr.callers, err = parseAll(r.From, parseCaller); err != nil {
		return fail("from", len(pr.callers), err)
	}
	if pr.methods, err = parseAll(r.To, parseMethod); err != nil {
		return fail("to", len(pr.methods), err)
	}
	if pr.at, err = parseAll(r.At, parseCaller); err != nil {
		return fail("at", len(pr.at), fmt.Errorf("at: %w", err))
	}
	if pr.subjects, err = parseAll(r.Subject, parseCaller); err != nil {
		return fail("subject", len(pr.subjects), fmt.Errorf("subject: %w", err))
	}
	switch {
	case r.DryRun && r.mergedDryRun && r.Effect == Allow:
		return fail("dry_run", -1, errors.New("an allow rule of a dry-run policy merged into an enforcing one would allow for real (see policy.Merge)"))
	case r.DryRun && r.Effect == Allow:
		return fail("dry_run", -1, errors.New("dry_run applies to deny rules only"))
	case r.RequireToken && r.Effect != Allow:
		return fail("require_token", -1, errors.New("require_token applies to allow rules only"))
	case r.Subject != nil && len(r.Subject) == 0:
		return fail("subject", -1, errors.New("subject is empty (leave it out to ignore the subject)"))
	case len(r.Subject) > 0 && r.Effect != Allow:
		return fail("subject", -1, errors.New("subject applies to allow rules only (a caller could escape a deny rule by sending no token)"))
	}
	return pr, nil
}

// parseAll parses every pattern in list with parse. On an error, the
// patterns returned are those before the bad one.
func parseAll[T any](list []string, parse func(string) (T, error)) ([]T, error) {
	out := make([]T, 0, len(list))
	for _, s := range list {
		v, err := parse(s)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ruleNames holds the names of a policy's rules, each with where it was
// declared, to refuse a name declared twice.
type ruleNames map[string]string

// add records name, declared at where, or fails if it was declared before.
func (n ruleNames) add(name, where string) error {
	if prev, dup := n[name]; dup {
		return fmt.Errorf("duplicate rule name (first declared at %s)", prev)
	}
	n[name] = where
	return nil
}

// ruleName is how errors name a rule: "(unnamed)", its name, or its name
// quoted when it is not valid (it could hold a line break).
func ruleName(n string) string {
	switch {
	case n == "":
		return "(unnamed)"
	case !validName(n):
		return strconv.Quote(n)
	}
	return n
}

var errRuleName = errors.New("name must not contain white space or control characters")

// validName reports whether n is a valid rule name: printable UTF-8 with
// no white space, so that it reads as one word in errors and audit logs.
func validName(n string) bool {
	return n != "" && utf8.ValidString(n) &&
		strings.IndexFunc(n, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) < 0
}
