package policy

import (
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Engine is a compiled, immutable policy. It is safe for concurrent use;
// to change the policy, compile a new Engine and swap it in (see [Watcher]).
type Engine struct {
	rules    []compiledRule
	methods  map[string]*methodIndex // "/pkg.Svc/Method" -> its rules, its service's and the global ones
	services map[string]*methodIndex // "pkg.Svc" -> its wildcard rules and the global ones
	global   *methodIndex            // rules for "*"
	dryRun   bool
	tokens   []string // names of the rules applying here that require a token
}

type compiledRule struct {
	name         string
	effect       Effect
	dryRun       bool
	requireToken bool
}

// methodIndex holds the rules that apply to one method, by effect, then by
// caller. allowToken holds the allow rules that require a token (they are
// in allow too).
type methodIndex struct {
	deny, dryRunDeny, allow, allowToken callerIndex
}

func (m *methodIndex) add(rule int32, r compiledRule, callers []callerPattern) {
	switch {
	case r.effect == Allow:
		m.allow.add(rule, callers)
		if r.requireToken {
			m.allowToken.add(rule, callers)
		}
	case r.dryRun:
		m.dryRunDeny.add(rule, callers)
	default:
		m.deny.add(rule, callers)
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

func (c *callerIndex) empty() bool { return len(c.exact) == 0 && len(c.patterns) == 0 }

// first returns the index of the first rule matching id, or -1.
func (c *callerIndex) first(id spiffeid.ID) int32 {
	best := int32(-1)
	if c.exact != nil {
		if r, ok := c.exact[id.String()]; ok {
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

func (e *Engine) lookup(method string) *methodIndex {
	if idx, ok := e.methods[method]; ok {
		return idx
	}
	if svc, _, ok := splitMethod(method); ok {
		if idx, ok := e.services[svc]; ok {
			return idx
		}
	}
	return e.global
}

// Decide returns the decision for caller calling method (a gRPC full method
// name, "/pkg.Service/Method"). A zero caller or an unknown method matches
// no rule naming them and is denied by default. Decide allocates nothing.
func (e *Engine) Decide(method string, caller spiffeid.ID) Decision {
	idx := e.lookup(method)
	if !caller.IsZero() {
		if r := idx.deny.first(caller); r >= 0 {
			return e.deny(e.rules[r].name)
		}
		if r := idx.allow.first(caller); r >= 0 {
			token := false
			if t := idx.allowToken.first(caller); t >= 0 {
				r, token = t, true
			}
			if d := idx.dryRunDeny.first(caller); d >= 0 {
				return Decision{Outcome: DryRunDenied, Rule: e.rules[d].name, RequireToken: token}
			}
			return Decision{Outcome: Allowed, Rule: e.rules[r].name, RequireToken: token}
		}
	}
	return e.deny(DefaultRule)
}

func (e *Engine) deny(rule string) Decision {
	if e.dryRun {
		return Decision{Outcome: DryRunDenied, Rule: rule}
	}
	return Decision{Outcome: Denied, Rule: rule}
}

// Covers reports whether at least one allow rule applies to method, for
// some caller: a served method that no allow rule covers can never be
// called, which is almost always a mistake in the policy.
func (e *Engine) Covers(method string) bool {
	return !e.lookup(method).allow.empty()
}

// Rules returns the number of rules in the policy.
func (e *Engine) Rules() int { return len(e.rules) }

// TokenRules returns the names of the allow rules that require a token
// ([Rule.RequireToken]) and apply on this server (see [ForServer]), in
// policy order, or nil if there are none. A server that cannot verify
// tokens must not run such a policy.
func (e *Engine) TokenRules() []string { return slices.Clone(e.tokens) }

// Source holds the engine in force. A *Engine is a Source of itself; a
// [Watcher] is one whose engine changes when its file does. Adapters call
// Engine once per decision, so it must be cheap and safe for concurrent use.
type Source interface {
	Engine() *Engine
}

// Engine returns e itself, so a fixed policy is a [Source].
func (e *Engine) Engine() *Engine { return e }
