package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// FileVersion is the only policy file format version, "version: 1".
const FileVersion = 1

// ParseError is the error [Parse] and [LoadFile] return for a policy file
// that is not valid. Its text is one line, "FILE:LINE: rule NAME: what is
// wrong", or "FILE:LINE: what is wrong" outside a rule.
type ParseError struct {
	// File is the file name given to Parse.
	File string
	// Line is the 1-based line the problem is on.
	Line int
	// Rule names the rule the problem is in, or is empty outside a rule. A
	// rule without a usable name is "(unnamed)"; a name that is not
	// printable is quoted.
	Rule string
	// Err says what is wrong.
	Err error
}

// Error returns "FILE:LINE: rule NAME: what is wrong".
func (e *ParseError) Error() string {
	if e.Rule == "" {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: rule %s: %v", e.File, e.Line, e.Rule, e.Err)
}

// Unwrap returns e.Err.
func (e *ParseError) Unwrap() error { return e.Err }

// LoadFile reads and parses the policy file at path (see [Parse]). The
// error is a [*ParseError] for a file that is not valid.
func LoadFile(path string) (Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, err
	}
	return Parse(path, data)
}

// Parse parses a YAML policy file:
//
//	version: 1                # required, must be 1
//	dry_run: false            # optional, the whole policy
//	txn_issuers: ["spiffe://shop.example/ns/shop/sa/gateway"]  # optional, see Policy.TxnIssuers
//	rules:
//	  - name: users-call-gateway
//	    effect: allow         # allow | deny
//	    from: ["spiffe://shop.example/user/*"]
//	    to: ["/shop.gateway.v1.StorefrontService/*"]
//	    at: ["spiffe://shop.example/ns/shop/sa/gateway"]   # optional, see Rule.At
//	    subject: ["spiffe://shop.example/user/*"]          # optional, allow rules only, see Rule.Subject
//	    dry_run: false        # optional, deny rules only
//	    require_token: false  # optional, allow rules only, see Rule.RequireToken
//
// Parsing is strict: unknown or duplicate fields, values of the wrong type,
// a missing or unsupported version, rules without a name, an effect, a
// caller or a method, duplicate rule names, invalid caller, method or
// server (at) patterns, an empty at list (leave at out for every server),
// dry_run on an allow rule, require_token on a deny rule, more than one
// YAML document and an empty file
// are all errors. The error is a [*ParseError] naming filename, the line
// and, inside a rule, the rule. A policy Parse returns always compiles on
// its own (see [Compile]).
//
// Each rule's Source is "FILE:LINE", the line the rule starts on; the
// Policy's Source is filename. Method patterns must be quoted when they
// start with "*" ("*" alone, for instance), because a plain * starts a
// YAML alias.
func Parse(filename string, data []byte) (Policy, error) {
	p := &parser{file: filename}
	if err := p.checkText(data); err != nil {
		return Policy{}, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Policy{}, p.fail(1, "", "empty policy file")
		}
		return Policy{}, p.yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return Policy{}, p.yamlError(err)
	default:
		return Policy{}, p.fail(extra.Line, "", "more than one YAML document (want one)")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return Policy{}, p.fail(doc.Line, "", "empty policy file")
	}
	return p.policy(deref(doc.Content[0]))
}

// parser holds the state of one Parse.
type parser struct {
	file string
}

func (p *parser) fail(line int, rule, format string, args ...any) error {
	return &ParseError{File: p.file, Line: line, Rule: rule, Err: fmt.Errorf(format, args...)}
}

// checkText rejects what YAML does not allow in a document (invalid UTF-8,
// control characters), with the line: yaml.v3 reports these without one.
func (p *parser) checkText(data []byte) error {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return p.fail(line, "", "invalid UTF-8")
		case r == '\n':
			line++
		case r == '\t', r == '\r', r == 0x85, r == 0xFEFF && i == 0:
		case r < 0x20, 0x7F <= r && r <= 0x9F, 0xD800 <= r && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF, r == 0xFEFF:
			return p.fail(line, "", "character %U is not allowed in YAML", r)
		}
		i += size
	}
	return nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the problems yaml.v3's parser (not its scanner)
// reports. For these, yaml.v3 gives the 0-based line of the construct the
// problem is in.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlError turns a yaml.v3 syntax error into a ParseError. yaml.v3 leaves
// out the line when the problem is on the first one, and gives a 0-based
// one for parser problems.
func (p *parser) yamlError(err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if contains(yamlParserProblems, msg) {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.Contains(msg, "did not find expected alphabetic or numeric character") {
		msg += ` (quote patterns that start with *, e.g. "*")`
	}
	return &ParseError{File: p.file, Line: line, Err: errors.New(msg)}
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// field is one key of a mapping.
type field struct {
	key, value *yaml.Node
}

// fields checks that m is a mapping whose keys are distinct strings from
// known, and returns its fields by key.
func (p *parser) fields(m *yaml.Node, rule string, known ...string) (map[string]field, error) {
	out := map[string]field{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, p.fail(m.Content[i].Line, rule, "field names must be strings")
		}
		if prev, dup := out[k.Value]; dup {
			return nil, p.fail(m.Content[i].Line, rule, "duplicate field %q (first on line %d)", k.Value, prev.key.Line)
		}
		if !contains(known, k.Value) {
			return nil, p.fail(m.Content[i].Line, rule, "unknown field %q (want %s)", k.Value, list(known))
		}
		out[k.Value] = field{key: m.Content[i], value: v}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// list returns "a, b or c".
func list(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

func (p *parser) boolean(f field, rule string) (bool, error) {
	var b bool
	if f.value.Kind != yaml.ScalarNode || f.value.ShortTag() != "!!bool" || f.value.Decode(&b) != nil {
		return false, p.fail(f.value.Line, rule, "%s must be true or false", f.key.Value)
	}
	return b, nil
}

func (p *parser) policy(root *yaml.Node) (Policy, error) {
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return Policy{}, p.fail(root.Line, "", "empty policy file")
	}
	if root.Kind != yaml.MappingNode {
		return Policy{}, p.fail(root.Line, "", "want a mapping with version and rules at the top level")
	}
	fs, err := p.fields(root, "", "version", "dry_run", "txn_issuers", "rules")
	if err != nil {
		return Policy{}, err
	}
	out := Policy{Source: p.file}

	v, ok := fs["version"]
	if !ok {
		return Policy{}, p.fail(root.Line, "", "missing version (want version: %d)", FileVersion)
	}
	var version int
	if v.value.Kind != yaml.ScalarNode || v.value.ShortTag() != "!!int" || v.value.Decode(&version) != nil {
		return Policy{}, p.fail(v.value.Line, "", "version must be an integer")
	}
	if version != FileVersion {
		return Policy{}, p.fail(v.value.Line, "", "unsupported version %d (want %d)", version, FileVersion)
	}

	if f, ok := fs["dry_run"]; ok {
		if out.DryRun, err = p.boolean(f, ""); err != nil {
			return Policy{}, err
		}
	}

	if f, ok := fs["txn_issuers"]; ok {
		if out.TxnIssuers, err = p.txnIssuers(f); err != nil {
			return Policy{}, err
		}
	}

	rs, ok := fs["rules"]
	if !ok {
		return Policy{}, p.fail(root.Line, "", "missing rules")
	}
	if rs.value.Kind != yaml.SequenceNode {
		return Policy{}, p.fail(rs.value.Line, "", "rules must be a list")
	}
	names := ruleNames{}
	for _, n := range rs.value.Content {
		r, err := p.rule(deref(n), names)
		if err != nil {
			return Policy{}, err
		}
		out.Rules = append(out.Rules, r)
	}
	return out, nil
}

// txnIssuers reads the top-level txn_issuers list: exact SPIFFE IDs.
func (p *parser) txnIssuers(f field) ([]string, error) {
	if f.value.Kind != yaml.SequenceNode {
		return nil, p.fail(f.value.Line, "", "txn_issuers must be a list of SPIFFE IDs")
	}
	var out []string
	for _, e := range f.value.Content {
		e = deref(e)
		if !isString(e) {
			return nil, p.fail(e.Line, "", "txn_issuers entries must be strings")
		}
		if _, err := spiffeid.FromString(e.Value); err != nil {
			return nil, p.fail(e.Line, "", "txn_issuers: %q: %v", e.Value, err)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

// rule reads one rule. decodeRule checks what only a file can get wrong
// (the YAML's shapes and types), checkRule the rule itself and names its
// name against the rules before it; every error points to the line of the
// field or pattern at fault.
func (p *parser) rule(n *yaml.Node, names ruleNames) (Rule, error) {
	if n.Kind != yaml.MappingNode {
		return Rule{}, p.fail(n.Line, "", "a rule must be a mapping with name, effect, from and to")
	}
	label := ruleLabel(n)
	r, lines, err := p.decodeRule(n, label)
	if err != nil {
		return Rule{}, err
	}
	if _, err := checkRule(r); err != nil {
		var re *ruleError
		errors.As(err, &re)
		return Rule{}, &ParseError{File: p.file, Line: lines.of(re.field, re.entry), Rule: label, Err: re.err}
	}
	if err := names.add(r.Name, r.Source); err != nil {
		return Rule{}, &ParseError{File: p.file, Line: lines.of("name", -1), Rule: label, Err: err}
	}
	return r, nil
}

// ruleLabel names a rule in every error about it, even one that comes
// before its name field.
func ruleLabel(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); isString(k) && k.Value == "name" && isString(v) && v.Value != "" {
			return ruleName(v.Value)
		}
	}
	return ruleName("")
}

// ruleLines says where the parts of a rule are in the file, to point the
// errors of [checkRule] there.
type ruleLines struct {
	rule    int              // the rule's first line, for a missing field
	fields  map[string]int   // field -> the line for a problem with the whole field
	entries map[string][]int // field -> the line of each of its patterns
}

// of returns the line for a problem with field (and its entry, if entry is
// not -1).
func (l ruleLines) of(field string, entry int) int {
	if lines := l.entries[field]; 0 <= entry && entry < len(lines) {
		return lines[entry]
	}
	if line, ok := l.fields[field]; ok {
		return line
	}
	return l.rule
}

// decodeRule reads the fields of rule n into a Rule, checking what only a
// file can get wrong: the fields' YAML types, a missing effect, an empty at
// list. The rest is for [checkRule].
func (p *parser) decodeRule(n *yaml.Node, label string) (Rule, ruleLines, error) {
	r := Rule{Source: fmt.Sprintf("%s:%d", p.file, n.Line)}
	lines := ruleLines{rule: n.Line, fields: map[string]int{}, entries: map[string][]int{}}
	fs, err := p.fields(n, label, "name", "effect", "from", "to", "at", "subject", "dry_run", "require_token")
	if err != nil {
		return Rule{}, lines, err
	}
	if f, ok := fs["name"]; ok {
		if !isString(f.value) {
			return Rule{}, lines, p.fail(f.value.Line, label, "name must be a string")
		}
		r.Name, lines.fields["name"] = f.value.Value, f.value.Line
	}
	f, ok := fs["effect"]
	switch {
	case !ok:
		return Rule{}, lines, p.fail(n.Line, label, "has no effect (want allow or deny)")
	case !isString(f.value):
		return Rule{}, lines, p.fail(f.value.Line, label, "effect must be allow or deny")
	}
	if r.Effect, err = ParseEffect(f.value.Value); err != nil {
		return Rule{}, lines, p.fail(f.value.Line, label, "%v", err)
	}
	if r.From, err = p.patterns(fs, label, "from", "caller", &lines); err != nil {
		return Rule{}, lines, err
	}
	if r.To, err = p.patterns(fs, label, "to", "method", &lines); err != nil {
		return Rule{}, lines, err
	}
	if f, ok := fs["at"]; ok {
		if r.At, err = p.patterns(fs, label, "at", "server", &lines); err != nil {
			return Rule{}, lines, err
		}
		if len(r.At) == 0 {
			return Rule{}, lines, p.fail(f.key.Line, label, "has no servers (at)")
		}
	}
	if _, ok := fs["subject"]; ok {
		if r.Subject, err = p.patterns(fs, label, "subject", "subject", &lines); err != nil {
			return Rule{}, lines, err
		}
		if r.Subject == nil {
			r.Subject = []string{} // written but empty: checkRule refuses it
		}
	}
	flags := []struct {
		key string
		b   *bool
	}{{"dry_run", &r.DryRun}, {"require_token", &r.RequireToken}}
	for _, flag := range flags {
		if f, ok := fs[flag.key]; ok {
			if *flag.b, err = p.boolean(f, label); err != nil {
				return Rule{}, lines, err
			}
			lines.fields[flag.key] = f.key.Line
		}
	}
	return r, lines, nil
}

// patterns reads the list of patterns in field key, noting the lines of
// the field and of each entry in lines. A missing or null field is an
// empty list.
func (p *parser) patterns(fs map[string]field, label, key, what string, lines *ruleLines) ([]string, error) {
	f, ok := fs[key]
	if !ok {
		return nil, nil
	}
	lines.fields[key] = f.key.Line
	switch {
	case f.value.Kind == yaml.ScalarNode && f.value.ShortTag() == "!!null":
		return nil, nil
	case f.value.Kind != yaml.SequenceNode:
		return nil, p.fail(f.value.Line, label, "%s must be a list of %s patterns", key, what)
	}
	out := make([]string, 0, len(f.value.Content))
	for _, e := range f.value.Content {
		e = deref(e)
		if !isString(e) {
			return nil, p.fail(e.Line, label, "%s entries must be strings", key)
		}
		out = append(out, e.Value)
		lines.entries[key] = append(lines.entries[key], e.Line)
	}
	return out, nil
}
