package policy

import (
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Engine is a compiled, immutable policy. It is safe for concurrent use;
// to change the policy, compile a new Engine and swap it in (see [Watcher]).
//
// Each rule is indexed at one of three levels: under the exact methods it
// names, under the services it names with "/pkg.Service/*", or as global
// for "*". A decision consults its method's index, its service's and the
// global one, and takes the first matching rule (in policy order) of the
// three.
//
// A nil *Engine is no policy, and fails closed: it denies every call by
// default ([DefaultRule]), covers no method, trusts no txn issuer and has
// no rules, so that a [Source] that hands one out refuses calls rather
// than panicking in the middle of one.
type Engine struct {
	rules    []compiledRule
	methods  map[string]*methodIndex // "/pkg.Svc/Method" -> the rules naming it exactly
	services map[string]*methodIndex // "pkg.Svc" -> the rules naming "/pkg.Svc/*"
	global   methodIndex             // the rules naming "*" (a zero Engine's: none, so its plan denies)
	dryRun   bool
	tokens   []string // names of the rules applying here that require a token

	txnIssuers   []spiffeid.ID // Policy.TxnIssuers
	subjectRules int           // rules applying here with subject patterns
}

type compiledRule struct {
	name         string
	effect       Effect
	dryRun       bool
	requireToken bool
	subjects     []callerPattern // Rule.Subject; empty: the subject plays no part
	here         bool            // the rule applies to this server (its at:, if any, names it)
}

// ruleKind is what a rule does to the calls it matches: allow rules that
// look at the subject are allowSubject (not allow); allowToken and
// allowSubjectToken rules are the allow and allowSubject rules that
// require a token (they are in those kinds too).
type ruleKind int

const (
	deny ruleKind = iota
	dryRunDeny
	allow
	allowToken
	allowSubject
	allowSubjectToken // allowSubject rules that require a token
	ruleKinds
)

// methodIndex holds the rules of one level (see [Engine]) for one method,
// service or all, by kind, then by caller.
type methodIndex struct {
	kinds [ruleKinds]callerIndex
	// last is the last rule added plus one (0: none yet), so that a rule
	// naming the same method twice is indexed once.
	last int32
	// plan is what a decision consults, made by [Engine.link].
	plan plan
}

// plan lists, for each kind of rule, the caller indexes a decision must
// consult: the non-empty ones of a method's level, its service's and the
// global one.
type plan [ruleKinds][]*callerIndex

// makePlan returns the plan for levels, the most specific first; nil ones
// are skipped.
func makePlan(levels ...*methodIndex) plan {
	var p plan
	for k := range ruleKinds {
		for _, l := range levels {
			if l != nil && !l.kinds[k].empty() {
				p[k] = append(p[k], &l.kinds[k])
			}
		}
	}
	return p
}

// first returns the index of the first rule of kind k matching id, at any
// level, or -1.
func (p *plan) first(k ruleKind, id spiffeid.ID) int32 {
	best := int32(-1)
	for _, c := range p[k] {
		best = c.first(id, best)
	}
	return best
}

func (m *methodIndex) add(rule int32, r compiledRule, callers []callerPattern) {
	if m.last == rule+1 {
		return
	}
	m.last = rule + 1
	switch {
	case r.effect == Allow && len(r.subjects) > 0:
		m.kinds[allowSubject].addInOrder(rule, callers)
		if r.requireToken {
			m.kinds[allowSubjectToken].addInOrder(rule, callers)
		}
	case r.effect == Allow:
		m.kinds[allow].add(rule, callers)
		if r.requireToken {
			m.kinds[allowToken].add(rule, callers)
		}
	case r.dryRun:
		m.kinds[dryRunDeny].add(rule, callers)
	default:
		m.kinds[deny].add(rule, callers)
	}
}

// callerIndex finds the first rule (in policy order) whose callers match.
type callerIndex struct {
	exact    map[string]int32 // SPIFFE ID -> lowest rule index naming it exactly
	patterns []patternRef     // in rule order
}

type patternRef struct {
	rule    int32
	pattern *callerPattern
}

func (c *callerIndex) add(rule int32, callers []callerPattern) {
	for i := range callers {
		p := &callers[i]
		if p.kind == kindExact {
			if c.exact == nil {
				c.exact = map[string]int32{}
			}
			if _, ok := c.exact[p.exact]; !ok {
				c.exact[p.exact] = rule
			}
			continue
		}
		c.patterns = append(c.patterns, patternRef{rule: rule, pattern: p})
	}
}

// addInOrder adds callers as patterns only (exact IDs too), so that
// [callerIndex.firstWith] can walk every rule matching a caller in order.
func (c *callerIndex) addInOrder(rule int32, callers []callerPattern) {
	for i := range callers {
		c.patterns = append(c.patterns, patternRef{rule: rule, pattern: &callers[i]})
	}
}

// firstWith returns the index of the first rule (of an index built with
// addInOrder) matching id whose subject patterns match subject, if it
// comes before best, or else best. With the zero subject no rule matches.
func (c *callerIndex) firstWith(id, subject spiffeid.ID, rules []compiledRule, best int32) int32 {
	if subject.IsZero() {
		return best
	}
	for _, pr := range c.patterns {
		if best >= 0 && pr.rule >= best {
			break
		}
		if pr.pattern.match(id) && matchAny(rules[pr.rule].subjects, subject) {
			return pr.rule
		}
	}
	return best
}

// matchAny reports whether id matches one of patterns.
func matchAny(patterns []callerPattern, id spiffeid.ID) bool {
	for i := range patterns {
		if patterns[i].match(id) {
			return true
		}
	}
	return false
}

func (c *callerIndex) empty() bool { return len(c.exact) == 0 && len(c.patterns) == 0 }

// first returns the index of the first rule matching id, if it comes
// before best, or else best; -1 is no rule.
func (c *callerIndex) first(id spiffeid.ID, best int32) int32 {
	if c.exact != nil {
		if r, ok := c.exact[id.String()]; ok && (best < 0 || r < best) {
			best = r
		}
	}
	for _, pr := range c.patterns {
		if best >= 0 && pr.rule >= best {
			break
		}
		if pr.pattern.match(id) {
			return pr.rule
		}
	}
	return best
}

// lookup returns the plan for a decision on method.
func (e *Engine) lookup(method string) *plan {
	if idx, ok := e.methods[method]; ok {
		return &idx.plan
	}
	if svc, _, ok := splitMethod(method); ok {
		if idx, ok := e.services[svc]; ok {
			return &idx.plan
		}
	}
	return &e.global.plan
}

// Decide returns the decision for caller calling method (a gRPC full method
// name, "/pkg.Service/Method") with no verified subject: [Engine.DecideFor]
// with the zero subject.
func (e *Engine) Decide(method string, caller spiffeid.ID) Decision {
	return e.DecideFor(method, caller, spiffeid.ID{})
}

// DecideFor returns the decision for caller calling method on behalf of
// subject, the verified subject of the call's transaction token (the zero
// ID when it has none). Deny rules decide on the caller alone; an allow
// rule with [Rule.Subject] patterns matches only when subject matches one.
// A zero caller or an unknown method matches no rule naming them and is
// denied by default, and so is every call on a nil Engine. DecideFor
// allocates nothing.
func (e *Engine) DecideFor(method string, caller, subject spiffeid.ID) Decision {
	if e == nil {
		return Decision{Outcome: Denied, Rule: DefaultRule}
	}
	p := e.lookup(method)
	if caller.IsZero() {
		return e.deny(DefaultRule)
	}
	if r := p.first(deny, caller); r >= 0 {
		return e.deny(e.rules[r].name)
	}
	r := p.first(allow, caller)
	for _, c := range p[allowSubject] {
		r = c.firstWith(caller, subject, e.rules, r)
	}
	if r < 0 {
		for _, c := range p[allowSubject] {
			if s := c.first(caller, -1); s >= 0 {
				// An allow rule for this caller wants a subject the call
				// does not have (or one it does not match).
				d := e.deny(e.rules[s].name)
				d.NeedSubject = subject.IsZero()
				return d
			}
		}
		return e.deny(DefaultRule)
	}
	// Any matching allow rule that requires a token makes the token
	// required; a subject rule matches only with its subject.
	token := false
	t := p.first(allowToken, caller)
	for _, c := range p[allowSubjectToken] {
		t = c.firstWith(caller, subject, e.rules, t)
	}
	if t >= 0 {
		r, token = t, true
	}
	if d := p.first(dryRunDeny, caller); d >= 0 {
		return Decision{Outcome: DryRunDenied, Rule: e.rules[d].name, RequireToken: token}
	}
	return Decision{Outcome: Allowed, Rule: e.rules[r].name, RequireToken: token}
}

func (e *Engine) deny(rule string) Decision {
	if e.dryRun {
		return Decision{Outcome: DryRunDenied, Rule: rule}
	}
	return Decision{Outcome: Denied, Rule: rule}
}

// Covers reports whether at least one allow rule applies to method, for
// some caller: a served method that no allow rule covers can never be
// called, which is almost always a mistake in the policy. A nil Engine
// covers nothing.
func (e *Engine) Covers(method string) bool {
	if e == nil {
		return false
	}
	p := e.lookup(method)
	return len(p[allow]) > 0 || len(p[allowSubject]) > 0
}

// UnusedDenies returns the names of the deny rules applying here that match
// none of methods (the methods a server serves), in policy order: such a
// rule refuses nothing on this server, which is what a typo in its method
// or service does (a caller it was meant to stop is let through by a
// broader allow rule). A rule written for another server is one too,
// unless its at: says so. A nil or zero Engine has none.
func (e *Engine) UnusedDenies(methods []string) []string {
	if e == nil {
		return nil
	}
	used := make([]bool, len(e.rules))
	for _, m := range methods {
		for _, kind := range e.lookup(m) {
			for _, c := range kind {
				for _, r := range c.exact {
					used[r] = true
				}
				for _, p := range c.patterns {
					used[p.rule] = true
				}
			}
		}
	}
	var out []string
	for i, r := range e.rules {
		if r.here && r.effect == Deny && !used[i] {
			out = append(out, r.name)
		}
	}
	return out
}

// TxnIssuers returns the SPIFFE IDs whose transaction tokens the policy
// trusts to name a call's subject ([Policy.TxnIssuers]), or nil.
func (e *Engine) TxnIssuers() []spiffeid.ID {
	if e == nil {
		return nil
	}
	return slices.Clone(e.txnIssuers)
}

// IsTxnIssuer reports whether id is one of the policy's TxnIssuers. It
// allocates nothing.
func (e *Engine) IsTxnIssuer(id spiffeid.ID) bool {
	return e != nil && slices.Contains(e.txnIssuers, id)
}

// NeedsSubjects reports whether a rule applying on this server looks at
// the subject ([Rule.Subject]): such a server must verify transaction
// tokens.
func (e *Engine) NeedsSubjects() bool { return e != nil && e.subjectRules > 0 }

// DryRun reports whether the whole policy is in dry-run ([Policy.DryRun]):
// its denials, the default deny included, are reported and not enforced.
func (e *Engine) DryRun() bool { return e != nil && e.dryRun }

// Rules returns the number of rules in the policy.
func (e *Engine) Rules() int {
	if e == nil {
		return 0
	}
	return len(e.rules)
}

// TokenRules returns the names of the allow rules that require a token
// ([Rule.RequireToken]) and apply on this server (see [ForServer]), in
// policy order, or nil if there are none. A server that cannot verify
// tokens must not run such a policy.
func (e *Engine) TokenRules() []string {
	if e == nil {
		return nil
	}
	return slices.Clone(e.tokens)
}

// Source holds the engine in force. A *Engine is a Source of itself; a
// [Watcher] is one whose engine changes when its file does. Adapters call
// Engine once per decision, so it must be cheap and safe for concurrent use.
// A nil engine is no policy: every call is denied while Engine returns one
// (interceptors.NewAuthorizer refuses a Source that has none to start
// with); so is a zero Engine, which has no rule (build engines with
// [Compile]).
type Source interface {
	Engine() *Engine
}

// Engine returns e itself, so a fixed policy is a [Source]. A nil Engine is
// a Source of no policy (see [Engine]).
func (e *Engine) Engine() *Engine { return e }
