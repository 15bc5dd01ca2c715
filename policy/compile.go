package policy

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CompileOption configures [Compile].
type CompileOption interface {
	applyToCompile(*compileConfig)
}

type compileConfig struct {
	server spiffeid.ID
	errs   []error
}

type compileOption func(*compileConfig)

func (o compileOption) applyToCompile(c *compileConfig) { o(c) }

// ForServer compiles the policy for the server whose own SPIFFE ID is id:
// rules with an At list apply only if id matches it. Without this option,
// rules with an At list apply nowhere. The zero ID is an error.
func ForServer(id spiffeid.ID) CompileOption {
	return compileOption(func(c *compileConfig) {
		if id.IsZero() {
			c.errs = append(c.errs, errors.New("policy: ForServer: the zero SPIFFE ID (name the server the policy is compiled for)"))
			return
		}
		c.server = id
	})
}

// here reports whether a rule with the server patterns at applies on the
// server being compiled for.
func (c *compileConfig) here(at []callerPattern) bool {
	if len(at) == 0 {
		return true
	}
	if c.server.IsZero() {
		return false
	}
	for i := range at {
		if at[i].match(c.server) {
			return true
		}
	}
	return false
}

// Compile checks p and compiles it into an immutable [Engine]. Every error
// names the rule and where it was declared: "SOURCE: rule NAME: problem".
//
// Compiling takes time and memory in proportion to the number of rules and
// patterns: each rule is indexed under the methods it names exactly, the
// services it names with "/pkg.Service/*", or "*", and a decision consults
// the three.
func Compile(p Policy, opts ...CompileOption) (*Engine, error) {
	var cfg compileConfig
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("policy: Compile: nil option")
		}
		o.applyToCompile(&cfg)
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	e := &Engine{
		methods:  map[string]*methodIndex{},
		services: map[string]*methodIndex{},
		dryRun:   p.DryRun,
	}
	names := ruleNames{}
	for _, r := range p.Rules {
		where := r.Source
		if where == "" {
			where = p.Source
		}
		if where == "" {
			where = "policy"
		}
		pr, err := checkRule(r)
		if err == nil {
			err = names.add(r.Name, where)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: rule %s: %w", where, ruleName(r.Name), err)
		}
		e.add(r, pr, cfg.here(pr.at))
	}
	for i, s := range p.TxnIssuers {
		id, err := spiffeid.FromString(s)
		if err != nil {
			where := p.Source
			if where == "" {
				where = "policy"
			}
			return nil, fmt.Errorf("%s: txn_issuers %d: %q: %w", where, i, s, err)
		}
		e.txnIssuers = append(e.txnIssuers, id)
	}
	e.link()
	return e, nil
}

// add appends r to the engine's rules and, if it applies here, indexes it
// under every method pattern it names.
func (e *Engine) add(r Rule, pr parsedRule, here bool) {
	i := int32(len(e.rules))
	cr := compiledRule{name: r.Name, effect: r.Effect, dryRun: r.DryRun, requireToken: r.RequireToken, subjects: pr.subjects, here: here}
	e.rules = append(e.rules, cr)
	if !here {
		return
	}
	if len(pr.subjects) > 0 {
		e.subjectRules++
	}
	if r.RequireToken {
		e.tokens = append(e.tokens, r.Name)
	}
	for _, m := range pr.methods {
		idx := &e.global
		switch {
		case m.method != "":
			idx = indexFor(e.methods, m.method)
		case m.service != "":
			idx = indexFor(e.services, m.service)
		}
		idx.add(i, cr, pr.callers)
	}
}

// indexFor returns the index of key in m, adding an empty one if needed.
func indexFor(m map[string]*methodIndex, key string) *methodIndex {
	idx, ok := m[key]
	if !ok {
		idx = &methodIndex{}
		m[key] = idx
	}
	return idx
}

// link makes the plan of every index: what a decision on its method,
// service or any other method consults, so that it takes one map lookup.
func (e *Engine) link() {
	for method, idx := range e.methods {
		svc, _, _ := splitMethod(method)
		idx.plan = makePlan(idx, e.services[svc], &e.global)
	}
	for _, idx := range e.services {
		idx.plan = makePlan(idx, &e.global)
	}
	e.global.plan = makePlan(&e.global)
}
