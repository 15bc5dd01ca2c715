package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// defaultPolicyFile is the sample mesh's policy, relative to the working
// directory (the repository root): what explain reads with --sample and no
// FILE.
const defaultPolicyFile = "services/policy.yaml"

// policyUsage is the help of "meshctl policy".
const policyUsage = `meshctl policy checks and explains authorization policy files: YAML files
of rules that say which callers (SPIFFE ID patterns) may call which methods
(/package.Service/Method). Any matching deny rule wins, then any matching
allow rule; everything else is denied by default.

Rules may also be declared next to the APIs, as trustmesh.v1 access options
in the protos, which a server merges with its policy file. Give the
subcommands the protos to do the same:

  --proto-descriptors SET   a FileDescriptorSet of your services, with its
                            imports (buf build -o SET)
  --sample                  the sample mesh's protos (shop, which keeps
                            people and operators in services/policy.yaml)

Their services' methods are then the ones lint checks and diff compares,
and --protos=false leaves their rules out. Without either, FILE stands
alone.

Usage:
  meshctl policy lint     FILE [--proto-descriptors SET | --sample] [--protos=false] [--methods FILE|-] [--standard=false] [--strict]
  meshctl policy explain  --caller SPIFFE_ID --method /pkg.Service/Method [--server SPIFFE_ID] [--proto-descriptors SET | --sample] [--protos=false] FILE
  meshctl policy diff     [--proto-descriptors SET | --sample] [--protos=false] OLD NEW
  meshctl policy test     [--proto-descriptors SET | --sample] [--protos=false] POLICY CASES

Run 'meshctl policy <subcommand> --help' for details.
`

const lintUsage = `Usage: meshctl policy lint FILE [--proto-descriptors SET | --sample] [--protos=false] [--methods FILE|-] [--standard=false] [--strict]

Parses and compiles the policy in FILE and prints "FILE: ok (N rules)", or
the first problem as FILE:LINE: rule NAME: what is wrong (exit 1). With
--proto-descriptors or --sample, the allow rules declared in those protos
are merged in first, as a server does, unless --protos=false.

It then checks the policy against the methods a server serves, as the
server does when it starts and on each reload. The methods checked are
those of the services in --proto-descriptors SET (or, with --sample, the
sample mesh's shop.* services), or those --methods lists instead: one
/package.Service/Method per line, blank lines and # comments ignored; "-"
reads the list from standard input. To either, the standard health and
reflection methods every mesh server serves are added, unless
--standard=false (a server built WithoutReflection still serves health).
With neither protos nor --methods, only the standard methods are checked,
and lint says so.

  uncovered: METHOD   no allow rule covers METHOD, so no one can call it
  unused deny: RULE   the deny rule RULE (without at:) matches none of the
                      methods, so it refuses nothing there: what a typo in
                      its to: does (not checked when only the standard
                      methods are)

Either is a warning (exit 0), or, with --strict, a failure (exit 1), as it
stops a server unless it runs WithCoverageWarnings.

SET is what 'buf build -o set.binpb' writes; keep the imports in it
(trustmesh/v1/access.proto among them), which is buf's default.
`

const explainUsage = `Usage: meshctl policy explain --caller SPIFFE_ID --method /pkg.Service/Method [--server SPIFFE_ID] [--proto-descriptors SET | --sample] [--protos=false] FILE

Prints the decision the policy in FILE, merged with the rules of the protos
given by --proto-descriptors or --sample unless --protos=false, makes when
the workload or person SPIFFE_ID calls the method, and the rule that makes
it, with where it is declared (FILE:LINE, or the proto method). With
--sample, FILE defaults to services/policy.yaml (run from the repository
root). The decision is one of

  allow          an allow rule matches and no deny rule does
  deny           a deny rule matches, or no allow rule does (default-deny)
  dry_run_deny   a dry-run deny rule matches, or the whole policy is in
                 dry-run and would deny: the call proceeds but is logged

--caller is a concrete SPIFFE ID (no wildcards) and --method a full gRPC
method name, as a server sees them. --server is the SPIFFE ID of the server
that decides, for rules limited to some servers by at:. The exit code is 0
whatever the decision; it is 1 only if FILE cannot be loaded.

Example:
  meshctl policy explain --sample --caller spiffe://shop.example/user/alice \
      --method /shop.payments.v1.PaymentService/Charge
`

const diffUsage = `Usage: meshctl policy diff [--proto-descriptors SET | --sample] [--protos=false] OLD NEW

Shows who gains and who loses access when the policy in OLD is replaced by
the one in NEW, both merged with the rules of the protos given by
--proto-descriptors or --sample unless --protos=false. It compares the two
decisions for each method and each caller:

  methods  every method named in either policy, every /package.Service/*
           pattern (standing for the service's other methods), * (for
           any other method), the standard health and reflection methods,
           and the methods of the protos' services
  callers  every caller pattern named in either policy, tried with an
           example ID: * becomes x, a trailing ** becomes x/y, and a
           bare trust domain spiffe://TD becomes spiffe://TD/x

Output, sorted by method then caller:

  METHOD: CALLER gains access (deny by default-deny -> allow by rule NAME)
  METHOD: CALLER loses access (allow by rule NAME -> deny by rule NAME)
  METHOD: CALLER changes decision (allow by rule NAME -> dry_run_deny by rule NAME)
  METHOD: CALLER now needs a token (allow by rule NAME -> allow with a token by rule NAME)
  METHOD: CALLER no longer needs a token (allow with a token by rule NAME -> allow by rule NAME)

"changes decision" is a change between allow and dry_run_deny, which both
let the call through. "needs a token" is about require_token rules. When
nothing changes it prints "no changes". The exit code is 0 either way; it
is 1 only if a file cannot be loaded.
`

func policyLint(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	methodsFile := flags.String("methods", "", `file listing the served methods, one per line ("-": standard input); default: the methods of the protos' services`)
	standard := flags.Bool("standard", true, "add the standard health and reflection methods every mesh server serves to the methods checked")
	strict := flags.Bool("strict", false, "fail (exit 1) on a method no allow rule covers or a deny rule that matches no method, instead of warning")
	protos := addProtoFlags(flags)
	positional, err := parseFlags(flags, path, lintUsage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usageErrorf("%swant exactly one FILE, got %d arguments (see '%s --help')", where(path), len(positional), path)
	}
	file := positional[0]
	src, err := protos.load(path)
	if err != nil {
		return err
	}
	var methods []string
	if *methodsFile != "" {
		if methods, err = readMethods(*methodsFile); err != nil {
			return err
		}
	} else {
		methods = serviceMethods(src.services)
	}
	if *standard {
		methods = withStandard(methods)
	}
	pf, err := loadPolicy(file, src)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", file, plural(pf.fileRules, "rule"))
	if n := len(pf.policy.Rules) - pf.fileRules; n > 0 {
		fmt.Fprintf(stdout, "merged with %s from %s\n", plural(n, "rule"), src.from)
	}
	var unused error
	switch {
	case src.from == "" && *methodsFile == "" && *standard:
		fmt.Fprintln(stdout, "note: no services given (--proto-descriptors SET, --sample or --methods FILE): coverage is checked for the standard health and reflection methods only")
	case len(methods) == 0:
		fmt.Fprintln(stdout, "note: no methods to check (--standard=false and no services given)")
		return nil
	default:
		unused = checkUnusedDenies(stdout, file, pf.engine, methods, *strict)
	}
	return errors.Join(unused, checkCoverage(stdout, file, pf.engine, methods, *strict))
}

// checkUnusedDenies prints each deny rule of engine (those without at:)
// that matches none of methods and a summary, as a server does at start:
// such a rule refuses nothing there, which is what a typo in its to: does.
// The summary is a warning, or with strict an error.
func checkUnusedDenies(stdout io.Writer, file string, engine *policy.Engine, methods []string, strict bool) error {
	unused := engine.UnusedDenies(methods)
	if len(unused) == 0 {
		return nil
	}
	for _, name := range unused {
		fmt.Fprintf(stdout, "unused deny: %s\n", name)
	}
	verb, it, its := "match", "they refuse", "their"
	if len(unused) == 1 {
		verb, it, its = "matches", "it refuses", "its"
	}
	summary := fmt.Sprintf("%s: %s %s none of the %s checked, so %s nothing there (a typo in %s to:? a rule meant for other servers says so with at:)",
		file, plural(len(unused), "deny rule"), verb, plural(len(methods), "method"), it, its)
	if strict {
		return errors.New(summary)
	}
	_, err := fmt.Fprintf(stdout, "warning: %s\n", summary)
	return err
}

// checkCoverage prints each of methods that no allow rule of engine
// covers and a summary: a warning, or with strict an error.
func checkCoverage(stdout io.Writer, file string, engine *policy.Engine, methods []string, strict bool) error {
	var uncovered int
	for _, m := range methods {
		if !engine.Covers(m) {
			fmt.Fprintf(stdout, "uncovered: %s\n", m)
			uncovered++
		}
	}
	if uncovered == 0 {
		return nil
	}
	summary := fmt.Sprintf("%s: %d of %s not covered by any allow rule", file, uncovered, plural(len(methods), "method"))
	if strict {
		return fmt.Errorf("%s", summary)
	}
	_, err := fmt.Fprintf(stdout, "warning: %s (--strict makes this an error)\n", summary)
	return err
}

func policyExplain(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	callerFlag := flags.String("caller", "", "SPIFFE ID of the caller (required), e.g. spiffe://shop.example/user/alice")
	method := flags.String("method", "", "full method name (required), e.g. /shop.gateway.v1.StorefrontService/ListProducts")
	protos := addProtoFlags(flags)
	serverFlag := flags.String("server", "", "SPIFFE ID of the server that decides, for rules limited by at: (default: none, so such rules do not apply), e.g. spiffe://shop.example/ns/shop/sa/gateway")
	subjectFlag := flags.String("subject", "", "SPIFFE ID of the verified subject (who the call is for, from its transaction token), for rules with subject: (default: none), e.g. spiffe://shop.example/user/alice")
	positional, err := parseFlags(flags, path, explainUsage, args, stdout)
	if err != nil {
		return err
	}
	var file string
	switch {
	case len(positional) == 1:
		file = positional[0]
	case len(positional) > 1:
		return usageErrorf("%swant at most one FILE, got %d arguments (see '%s --help')", where(path), len(positional), path)
	case *protos.sample:
		file = defaultPolicyFile
	default:
		return usageErrorf("%swant a FILE, or --sample for %s (see '%s --help')", where(path), defaultPolicyFile, path)
	}
	switch {
	case *callerFlag == "":
		return usageErrorf("%s--caller is required (see '%s --help')", where(path), path)
	case *method == "":
		return usageErrorf("%s--method is required (see '%s --help')", where(path), path)
	}
	caller, err := spiffeid.FromString(*callerFlag)
	if err != nil {
		return usageErrorf("--caller %q: %v (want spiffe://TRUST_DOMAIN/PATH)", *callerFlag, err)
	}
	if err := checkMethod(*method); err != nil {
		return usageErrorf("--method %q: %v", *method, err)
	}
	var subject spiffeid.ID
	if *subjectFlag != "" {
		if subject, err = spiffeid.FromString(*subjectFlag); err != nil {
			return usageErrorf("--subject %q: %v (want spiffe://TRUST_DOMAIN/PATH)", *subjectFlag, err)
		}
	}

	var compileOpts []policy.CompileOption
	if *serverFlag != "" {
		server, err := spiffeid.FromString(*serverFlag)
		if err != nil {
			return usageErrorf("--server %q: %v", *serverFlag, err)
		}
		compileOpts = append(compileOpts, policy.ForServer(server))
	}
	src, err := protos.load(path)
	if err != nil {
		return err
	}
	pf, err := loadPolicy(file, src, compileOpts...)
	if err != nil {
		return err
	}
	return printDecision(stdout, pf, *method, caller, subject)
}

// printDecision prints the decision of pf for caller calling method on
// behalf of subject (zero: none), the rule that makes it and where that is
// declared.
func printDecision(stdout io.Writer, pf loadedPolicy, method string, caller, subject spiffeid.ID) error {
	d := pf.engine.DecideFor(method, caller, subject)
	fmt.Fprintf(stdout, "caller:   %s\n", caller)
	if !subject.IsZero() {
		fmt.Fprintf(stdout, "subject:  %s\n", subject)
	}
	fmt.Fprintf(stdout, "method:   %s\ndecision: %s\n", method, d.Outcome)
	if d.Rule == policy.DefaultRule {
		fmt.Fprintf(stdout, "rule:     %s (no rule matches)\n", d.Rule)
	} else {
		fmt.Fprintf(stdout, "rule:     %s\n", d.Rule)
		if src := ruleSource(pf.policy, d.Rule); src != "" {
			fmt.Fprintf(stdout, "source:   %s\n", src)
		}
	}
	if d.RequireToken {
		fmt.Fprintln(stdout, "token:    required (authorization: Bearer TOKEN, bound to the caller's certificate)")
	}
	if d.NeedSubject {
		fmt.Fprintln(stdout, "subject:  required (a transaction token minted by one of txn_issuers; refused as unauthenticated without one)")
	}
	if pf.policy.DryRun {
		_, err := fmt.Fprintln(stdout, "note:     the whole policy is in dry-run: denied calls proceed")
		return err
	}
	return nil
}

func policyDiff(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	protos := addProtoFlags(flags)
	positional, err := parseFlags(flags, path, diffUsage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) != 2 {
		return usageErrorf("%swant OLD and NEW files, got %d arguments (see '%s --help')", where(path), len(positional), path)
	}
	src, err := protos.load(path)
	if err != nil {
		return err
	}
	before, err := loadPolicy(positional[0], src)
	if err != nil {
		return err
	}
	after, err := loadPolicy(positional[1], src)
	if err != nil {
		return err
	}
	methods, callers := diffCases(withStandard(serviceMethods(src.services)), before, after)
	// Each caller is tried without a subject and on behalf of an example
	// of every subject pattern of either policy; a change on behalf of a
	// subject is reported only where the subject makes a difference (its
	// decisions are not those without one).
	subjects := append([]exampleCaller{{}}, diffSubjects(before, after)...)
	changes := 0
	for _, m := range methods {
		for _, c := range callers {
			var wasNone, isNone policy.Decision
			for i, sub := range subjects {
				was, is := before.engine.DecideFor(m, c.id, sub.id), after.engine.DecideFor(m, c.id, sub.id)
				if i == 0 {
					wasNone, isNone = was, is
				} else if was == wasNone && is == isNone {
					continue
				}
				if was.Outcome == is.Outcome && was.NeedSubject == is.NeedSubject && (was.RequireToken == is.RequireToken || !is.Proceed()) {
					continue
				}
				who := c.label()
				if !sub.id.IsZero() {
					who += " for " + sub.label()
				}
				fmt.Fprintf(stdout, "%s: %s %s (%s -> %s)\n", m, who, changeVerb(was, is), describe(was), describe(is))
				changes++
			}
		}
	}
	if changes == 0 {
		_, err = fmt.Fprintln(stdout, "no changes")
	}
	return err
}

// diffCases returns, sorted and without repeats, the methods diff compares
// (methods and every method pattern of the policies) and the example
// callers it tries (one for each caller pattern of the policies).
func diffCases(methods []string, policies ...loadedPolicy) ([]string, []exampleCaller) {
	var callers []exampleCaller
	for _, pf := range policies {
		for _, r := range pf.policy.Rules {
			// Compile accepted every pattern, so To holds only "*",
			// "/pkg.Svc/*" and exact methods. The engine treats a
			// "/pkg.Svc/*" it is asked about as a method of pkg.Svc that
			// no rule names exactly, and "*" as a method of a service no
			// rule names: each stands for "any other method" there.
			methods = append(methods, r.To...)
			for _, from := range r.From {
				if c, ok := exampleFor(from); ok {
					callers = append(callers, c)
				}
			}
		}
	}
	slices.Sort(methods)
	methods = slices.Compact(methods)
	// Sort by ID, and for one ID put an exact mention (whose pattern is
	// the ID itself) first, so that it is the one kept.
	slices.SortFunc(callers, func(a, b exampleCaller) int {
		if c := strings.Compare(a.id.String(), b.id.String()); c != 0 {
			return c
		}
		return strings.Compare(a.label(), b.label())
	})
	return methods, slices.CompactFunc(callers, func(a, b exampleCaller) bool { return a.id == b.id })
}

// diffSubjects returns an example subject for each subject pattern of the
// policies, sorted and without repeats.
func diffSubjects(policies ...loadedPolicy) []exampleCaller {
	var out []exampleCaller
	for _, pf := range policies {
		for _, r := range pf.policy.Rules {
			for _, sub := range r.Subject {
				if c, ok := exampleFor(sub); ok {
					out = append(out, c)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b exampleCaller) int { return strings.Compare(a.label(), b.label()) })
	return slices.CompactFunc(out, func(a, b exampleCaller) bool { return a.id == b.id })
}

// changeVerb names the change from decision was to is, which differ.
func changeVerb(was, is policy.Decision) string {
	switch {
	case was.Outcome == is.Outcome && is.NeedSubject && !was.NeedSubject:
		return "now needs a subject"
	case was.Outcome == is.Outcome && was.NeedSubject && !is.NeedSubject:
		return "no longer needs a subject"
	case was.Outcome == is.Outcome && is.RequireToken:
		return "now needs a token"
	case was.Outcome == is.Outcome:
		return "no longer needs a token"
	case !was.Proceed() && is.Proceed():
		return "gains access"
	case was.Proceed() && !is.Proceed():
		return "loses access"
	}
	return "changes decision"
}

// protoFlags are the flags that give a policy subcommand protos: their
// access options are merged with the policy file, and their services'
// methods are the ones served.
type protoFlags struct {
	descriptors *string
	sample      *bool
	merge       *bool
}

// addProtoFlags defines --proto-descriptors, --sample and --protos on
// flags.
func addProtoFlags(flags *flag.FlagSet) *protoFlags {
	return &protoFlags{
		descriptors: flags.String("proto-descriptors", "", "FileDescriptorSet of your services, with its imports (buf build -o FILE): their access options are merged and their methods served"),
		sample:      flags.Bool("sample", false, "use the sample mesh's protos (shop.*) as --proto-descriptors would"),
		merge:       flags.Bool("protos", true, "merge the allow rules declared in the protos (trustmesh.v1 access options), as a server does; false keeps only their methods"),
	}
}

// protoSource is what protoFlags gave: services (none without protos),
// where they come from ("" without protos) and whether to merge their
// rules.
type protoSource struct {
	services []protoreflect.ServiceDescriptor
	from     string
	merge    bool
}

// load reads the protos the flags name; path is the command, for usage
// errors.
func (p *protoFlags) load(path string) (protoSource, error) {
	src := protoSource{merge: *p.merge}
	var err error
	switch {
	case *p.sample && *p.descriptors != "":
		return src, usageErrorf("%s--sample and --proto-descriptors are alternatives: give one (see '%s --help')", where(path), path)
	case *p.sample:
		src.from = "the sample mesh's protos"
		src.services, err = descriptorServices(sample.ProtoDescriptors(), "--sample")
	case *p.descriptors != "":
		src.from = *p.descriptors
		src.services, err = readDescriptorSet(*p.descriptors)
	}
	return src, err
}

// loadedPolicy is a policy file, possibly merged with the rules of protos,
// and its compiled engine.
type loadedPolicy struct {
	policy    policy.Policy
	engine    *policy.Engine
	fileRules int // how many of policy.Rules come from the file
}

// loadPolicy loads the policy file at path, merges the rules of src's
// services into it if src says so, and compiles the result. Its errors
// name the file, and the line and rule where there is one.
func loadPolicy(path string, src protoSource, opts ...policy.CompileOption) (loadedPolicy, error) {
	p, err := policy.LoadFile(path)
	if err != nil {
		return loadedPolicy{}, err
	}
	if p.Source == "" {
		p.Source = path
	}
	lp := loadedPolicy{policy: p, fileRules: len(p.Rules)}
	if src.merge && len(src.services) > 0 {
		base, err := policy.FromServices(src.services...)
		if err != nil {
			return loadedPolicy{}, err
		}
		lp.policy = policy.Merge(p, base)
	}
	if lp.engine, err = policy.Compile(lp.policy, opts...); err != nil {
		return loadedPolicy{}, err
	}
	return lp, nil
}

// ruleSource returns where the rule called name was declared, or "".
func ruleSource(p policy.Policy, name string) string {
	for _, r := range p.Rules {
		if r.Name == name {
			return r.Source
		}
	}
	return ""
}

// describe renders a decision as "allow by rule NAME", "allow with a
// token by rule NAME" or "deny by default-deny".
func describe(d policy.Decision) string {
	if d.Rule == policy.DefaultRule {
		return d.Outcome.String() + " by " + d.Rule
	}
	switch {
	case d.RequireToken:
		return d.Outcome.String() + " with a token by rule " + d.Rule
	case d.NeedSubject:
		return d.Outcome.String() + " without a subject by rule " + d.Rule
	}
	return d.Outcome.String() + " by rule " + d.Rule
}

// exampleCaller is a concrete SPIFFE ID standing for a caller pattern.
type exampleCaller struct {
	id      spiffeid.ID
	pattern string
}

// label names the caller in diff output: the ID, and the pattern it stands
// for when that is a wildcard.
func (c exampleCaller) label() string {
	if c.pattern == c.id.String() {
		return c.pattern
	}
	return c.id.String() + " (example of " + c.pattern + ")"
}

// exampleFor turns a caller pattern into an ID it matches: "*" becomes "x",
// a trailing "**" becomes "x/y", and a bare trust domain gets the path "/x".
func exampleFor(pattern string) (exampleCaller, bool) {
	const scheme = "spiffe://"
	rest, ok := strings.CutPrefix(pattern, scheme)
	if !ok {
		return exampleCaller{}, false
	}
	td, p, _ := strings.Cut(rest, "/")
	segs := strings.Split(p, "/")
	switch {
	case p == "":
		segs = []string{"x"}
	case segs[len(segs)-1] == "**":
		segs = append(segs[:len(segs)-1], "x", "y")
	}
	for i, s := range segs {
		if s == "*" {
			segs[i] = "x"
		}
	}
	id, err := spiffeid.FromString(scheme + td + "/" + strings.Join(segs, "/"))
	if err != nil {
		return exampleCaller{}, false
	}
	return exampleCaller{id: id, pattern: pattern}, true
}

// serviceMethods returns the methods of services.
func serviceMethods(services []protoreflect.ServiceDescriptor) []string {
	var methods []string
	for _, svc := range services {
		methods = append(methods, policy.MethodNames(svc)...)
	}
	return methods
}

// withStandard returns methods and the standard ones every mesh server
// serves (health, with grpc-go's List, and reflection), sorted.
func withStandard(methods []string) []string {
	methods = append(methods, mesh.GRPCStandardMethods()...)
	slices.Sort(methods)
	return slices.Compact(methods)
}

// readMethods reads a --methods list: one method per line, blank lines and
// # comments ignored; "-" is standard input.
func readMethods(name string) ([]string, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--methods: %w", err)
		}
		defer f.Close()
		r = f
	} else {
		name = "standard input"
	}
	var methods []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if err := checkMethod(text); err != nil {
			return nil, fmt.Errorf("%s:%d: method %q: %w", name, line, text, err)
		}
		methods = append(methods, text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--methods %s: %w", name, err)
	}
	slices.Sort(methods)
	return slices.Compact(methods), nil
}

// checkMethod checks that m is a full method name a server serves,
// "/pkg.Service/Method", not a pattern. The error does not repeat m.
func checkMethod(m string) error {
	if err := policy.ParseMethod(m); err != nil {
		// policy's errors start with `method "M": `.
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("method %q: ", m))
		return errors.New(msg)
	}
	if strings.HasSuffix(m, "*") {
		return errors.New("want a method, /package.Service/Method, not a pattern")
	}
	return nil
}

// plural returns "1 rule" or "N rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// readDescriptorSet reads the FileDescriptorSet at path (--proto-descriptors)
// and returns its services, as [descriptorServices] does.
func readDescriptorSet(path string) ([]protoreflect.ServiceDescriptor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--proto-descriptors: %w", err)
	}
	return descriptorServices(data, "--proto-descriptors "+path)
}

// descriptorServices parses a FileDescriptorSet and returns its services,
// sorted by name; name says where the set comes from, in errors. The set's
// options are decoded with the extensions it declares itself
// (trustmesh.v1's access options among them), so that meshctl needs no
// generated code of anyone's protos, its own included.
func descriptorServices(data []byte, name string) ([]protoreflect.ServiceDescriptor, error) {
	// Decode once to learn the extensions the files declare, then again
	// with them known, so that the options hold them as fields rather
	// than unknown bytes.
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s: not a FileDescriptorSet: %w", name, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (build it with its imports: buf build -o FILE)", name, err)
	}
	set.Reset()
	if err := (proto.UnmarshalOptions{Resolver: dynamicpb.NewTypes(files)}).Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s: options: %w", name, err)
	}
	if files, err = protodesc.NewFiles(&set); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var services []protoreflect.ServiceDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			services = append(services, fd.Services().Get(i))
		}
		return true
	})
	if len(services) == 0 {
		return nil, fmt.Errorf("%s: no services in it", name)
	}
	slices.SortFunc(services, func(a, b protoreflect.ServiceDescriptor) int {
		return strings.Compare(string(a.FullName()), string(b.FullName()))
	})
	return services, nil
}
