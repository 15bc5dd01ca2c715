package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CompileOption configures [Compile].
type CompileOption func(*compileConfig)

type compileConfig struct {
	server spiffeid.ID
}

// ForServer compiles the policy for the server whose own SPIFFE ID is id:
// rules with an At list apply only if id matches it. Without this option,
// rules with an At list apply nowhere.
func ForServer(id spiffeid.ID) CompileOption {
	return func(c *compileConfig) { c.server = id }
}

// Compile checks p and compiles it into an immutable [Engine]. Every error
// names the rule and where it was declared: "SOURCE: rule NAME: problem".
func Compile(p Policy, opts ...CompileOption) (*Engine, error) {
	var cfg compileConfig
	for _, o := range opts {
		o(&cfg)
	}
	e := &Engine{
		methods:  map[string]*methodIndex{},
		services: map[string]*methodIndex{},
		dryRun:   p.DryRun,
	}
	seen := map[string]string{}
	type parsedRule struct {
		callers []callerPattern
		methods []methodPattern
		here    bool // the rule applies on this server (At)
	}
	parsed := make([]parsedRule, len(p.Rules))
	for i, r := range p.Rules {
		where := r.Source
		if where == "" {
			where = p.Source
		}
		if where == "" {
			where = "policy"
		}
		fail := func(err error) (*Engine, error) {
			return nil, fmt.Errorf("%s: rule %s: %w", where, ruleName(r.Name), err)
		}
		switch {
		case r.Name == "":
			return fail(errors.New("has no name"))
		case !validName(r.Name):
			return fail(errRuleName)
		case r.Effect != Allow && r.Effect != Deny:
			return fail(errors.New("effect must be allow or deny"))
		case len(r.From) == 0:
			return fail(errors.New("has no callers (from)"))
		case len(r.To) == 0:
			return fail(errors.New("has no methods (to)"))
		case r.DryRun && r.Effect == Allow:
			return fail(errors.New("dry_run applies to deny rules only"))
		case r.RequireToken && r.Effect != Allow:
			return fail(errRequireTokenOnDeny)
		}
		if prev, dup := seen[r.Name]; dup {
			return fail(fmt.Errorf("duplicate rule name (first declared at %s)", prev))
		}
		seen[r.Name] = where
		for _, f := range r.From {
			c, err := parseCaller(f)
			if err != nil {
				return fail(err)
			}
			parsed[i].callers = append(parsed[i].callers, c)
		}
		for _, t := range r.To {
			m, err := parseMethod(t)
			if err != nil {
				return fail(err)
			}
			parsed[i].methods = append(parsed[i].methods, m)
		}
		parsed[i].here = len(r.At) == 0
		for _, a := range r.At {
			c, err := parseCaller(a)
			if err != nil {
				return fail(fmt.Errorf("at: %w", err))
			}
			if !cfg.server.IsZero() && c.match(cfg.server) {
				parsed[i].here = true
			}
		}
		e.rules = append(e.rules, compiledRule{name: r.Name, effect: r.Effect, dryRun: r.DryRun, requireToken: r.RequireToken})
		if r.RequireToken && parsed[i].here {
			e.tokens = append(e.tokens, r.Name)
		}
	}

	// Which rules apply to each exact method, each service wildcard, and
	// every method? An exact method inherits its service's and the global
	// rules; a service inherits the global rules.
	applies := func(m methodPattern, method, service string) bool {
		switch {
		case m.all:
			return true
		case m.service != "":
			return m.service == service
		default:
			return method != "" && m.method == method
		}
	}
	build := func(method, service string) *methodIndex {
		idx := &methodIndex{}
		for i, pr := range parsed {
			if !pr.here {
				continue
			}
			for _, m := range pr.methods {
				if applies(m, method, service) {
					idx.add(int32(i), e.rules[i], pr.callers)
					break
				}
			}
		}
		return idx
	}
	for _, pr := range parsed {
		for _, m := range pr.methods {
			switch {
			case m.method != "":
				if _, ok := e.methods[m.method]; !ok {
					svc, _, _ := splitMethod(m.method)
					e.methods[m.method] = build(m.method, svc)
				}
			case m.service != "":
				if _, ok := e.services[m.service]; !ok {
					e.services[m.service] = build("", m.service)
				}
			}
		}
	}
	e.global = build("", "")
	return e, nil
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

var (
	errRuleName           = errors.New("name must not contain white space or control characters")
	errRequireTokenOnDeny = errors.New("require_token applies to allow rules only")
)

// validName reports whether n is a valid rule name: printable UTF-8 with
// no white space, so that it reads as one word in errors and audit logs.
func validName(n string) bool {
	return n != "" && utf8.ValidString(n) &&
		strings.IndexFunc(n, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) < 0
}
