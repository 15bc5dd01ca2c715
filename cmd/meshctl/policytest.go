package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/trustmesh/trustmesh/policy"
)

const testUsage = `Usage: meshctl policy test [--proto-descriptors SET | --sample] [--protos=false] POLICY CASES

Runs a table of expected decisions (CASES, YAML) against the policy in
POLICY, merged with the rules of the protos given by --proto-descriptors or
--sample unless --protos=false, as a server compiles it: policy as code. It
prints one line per failing case, CASES:LINE: case NAME: what differs, then
"N cases, M failed", and exits 1 if any case failed.

CASES:

  version: 1
  cases:
    - name: alice places orders                 # required, unique
      caller: spiffe://shop.example/user/alice  # required: the verified peer
      method: /shop.gateway.v1.StorefrontService/PlaceOrder   # required
      server: spiffe://shop.example/ns/shop/sa/gateway        # optional: the server deciding (at: rules)
      subject: spiffe://shop.example/user/alice # optional: the verified subject of the call's transaction token
      token: true                               # optional: the call presents a valid access token
      want: allow                               # allow | deny | dry_run_deny | unauthenticated
      rule: users-call-storefront-v1            # optional: the rule that must decide

"unauthenticated" is a call the policy would let through only with a token
it lacks (a require_token rule without token: true) or only on behalf of a
subject it lacks (a subject: rule without subject:). The rule checked is the
one the decision names (default-deny when no rule matches).
`

// policyCase is one expected decision.
type policyCase struct {
	Name    string `yaml:"name"`
	Caller  string `yaml:"caller"`
	Method  string `yaml:"method"`
	Server  string `yaml:"server"`
	Subject string `yaml:"subject"`
	Token   bool   `yaml:"token"`
	Want    string `yaml:"want"`
	Rule    string `yaml:"rule"`

	line int
}

var caseFields = []string{"name", "caller", "method", "server", "subject", "token", "want", "rule"}

var caseWants = []string{"allow", "deny", "dry_run_deny", "unauthenticated"}

func policyTest(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	protos := addProtoFlags(flags)
	positional, err := parseFlags(flags, path, testUsage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) != 2 {
		return usageErrorf("%swant POLICY and CASES files, got %d arguments (see '%s --help')", where(path), len(positional), path)
	}
	casesFile := positional[1]
	cases, err := loadCases(casesFile)
	if err != nil {
		return err
	}
	src, err := protos.load(path)
	if err != nil {
		return err
	}
	// One engine per server named by the cases (at: rules depend on it).
	engines := map[string]loadedPolicy{}
	failed := 0
	for _, c := range cases {
		pf, ok := engines[c.Server]
		if !ok {
			var opts []policy.CompileOption
			if c.Server != "" {
				opts = append(opts, policy.ForServer(spiffeid.RequireFromString(c.Server))) // checked by loadCases
			}
			if pf, err = loadPolicy(positional[0], src, opts...); err != nil {
				return err
			}
			engines[c.Server] = pf
		}
		if msg := c.check(pf.engine); msg != "" {
			fmt.Fprintf(stdout, "%s:%d: case %s: %s\n", casesFile, c.line, c.Name, msg)
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d cases, %d failed\n", len(cases), failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d policy cases failed", failed, len(cases))
	}
	return nil
}

// check returns what differs between the case and the decision of e, or "".
func (c policyCase) check(e *policy.Engine) string {
	caller := spiffeid.RequireFromString(c.Caller) // checked by loadCases
	var subject spiffeid.ID
	if c.Subject != "" {
		subject = spiffeid.RequireFromString(c.Subject)
	}
	d := e.DecideFor(c.Method, caller, subject)
	got := d.Outcome.String()
	switch {
	case d.NeedSubject:
		got = "unauthenticated"
	case d.Proceed() && d.RequireToken && !c.Token:
		got = "unauthenticated"
	}
	if got == c.Want && (c.Rule == "" || c.Rule == d.Rule) {
		return ""
	}
	msg := fmt.Sprintf("got %s by rule %s, want %s", got, d.Rule, c.Want)
	if c.Rule != "" {
		msg += " by rule " + c.Rule
	}
	return msg
}

// loadCases reads and checks a CASES file; its errors name the line.
func loadCases(path string) ([]policyCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty cases file", path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fail(doc.Line, "want a mapping with version and cases at the top level")
	}
	var version *yaml.Node
	var list *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		switch k, v := doc.Content[i], doc.Content[i+1]; k.Value {
		case "version":
			version = v
		case "cases":
			list = v
		default:
			return nil, fail(k.Line, "unknown field %q (want version or cases)", k.Value)
		}
	}
	switch {
	case version == nil:
		return nil, fail(doc.Line, "missing version (want version: 1)")
	case version.Value != "1":
		return nil, fail(version.Line, "unsupported version %q (want 1)", version.Value)
	case list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0:
		return nil, fail(doc.Line, "cases must be a non-empty list")
	}
	var out []policyCase
	names := map[string]int{}
	for _, n := range list.Content {
		c, err := decodeCase(n, fail)
		if err != nil {
			return nil, err
		}
		if prev, dup := names[c.Name]; dup {
			return nil, fail(n.Line, "case %s: duplicate name (first at line %d)", c.Name, prev)
		}
		names[c.Name] = n.Line
		out = append(out, c)
	}
	return out, nil
}

// decodeCase reads and checks one case.
func decodeCase(n *yaml.Node, fail func(int, string, ...any) error) (policyCase, error) {
	if n.Kind != yaml.MappingNode {
		return policyCase{}, fail(n.Line, "a case must be a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(caseFields, k.Value) {
			return policyCase{}, fail(k.Line, "unknown field %q (want %s)", k.Value, strings.Join(caseFields, ", "))
		}
	}
	var c policyCase
	if err := n.Decode(&c); err != nil {
		return policyCase{}, fail(n.Line, "%v", err)
	}
	c.line = n.Line
	label := c.Name
	if label == "" {
		label = "(unnamed)"
	}
	switch {
	case c.Name == "":
		return c, fail(n.Line, "case has no name")
	case c.Caller == "" || c.Method == "" || c.Want == "":
		return c, fail(n.Line, "case %s: caller, method and want are required", label)
	case !slices.Contains(caseWants, c.Want):
		return c, fail(n.Line, "case %s: want %q: want one of %s", label, c.Want, strings.Join(caseWants, ", "))
	}
	for field, id := range map[string]string{"caller": c.Caller, "server": c.Server, "subject": c.Subject} {
		if id == "" {
			continue
		}
		if _, err := spiffeid.FromString(id); err != nil {
			return c, fail(n.Line, "case %s: %s %q: %v", label, field, id, err)
		}
	}
	if err := checkMethod(c.Method); err != nil {
		return c, fail(n.Line, "case %s: method %q: %v", label, c.Method, err)
	}
	return c, nil
}
