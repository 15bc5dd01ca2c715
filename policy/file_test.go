package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	// Each file in testdata is named by its defect; the error names the
	// file, the line and the rule.
	testCases := []struct {
		file string
		want string
	}{
		// The file as a whole.
		{"empty.yaml", "empty.yaml:1: empty policy file"},
		{"comments-only.yaml", "comments-only.yaml:1: empty policy file"},
		{"multiple-documents.yaml", "multiple-documents.yaml:3: more than one YAML document (want one)"},
		{"syntax-error.yaml", "syntax-error.yaml:5: did not find expected ',' or ']'"},
		{"tab-indent.yaml", "tab-indent.yaml:3: found character that cannot start any token"},
		{"unquoted-star.yaml", `unquoted-star.yaml:6: did not find expected alphabetic or numeric character (quote patterns that start with *, e.g. "*")`},
		{"control-character.yaml", "control-character.yaml:3: character U+0001 is not allowed in YAML"},
		{"invalid-utf8.yaml", "invalid-utf8.yaml:3: invalid UTF-8"},
		{"top-level-list.yaml", "top-level-list.yaml:1: want a mapping with version and rules at the top level"},

		// Top-level fields.
		{"unknown-field.yaml", `unknown-field.yaml:2: unknown field "default" (want version, dry_run, txn_issuers or rules)`},
		{"duplicate-field.yaml", `duplicate-field.yaml:3: duplicate field "rules" (first on line 2)`},
		{"missing-version.yaml", "missing-version.yaml:1: missing version (want version: 1)"},
		{"unsupported-version.yaml", "unsupported-version.yaml:1: unsupported version 2 (want 1)"},
		{"version-not-an-integer.yaml", "version-not-an-integer.yaml:1: version must be an integer"},
		{"policy-dry-run-not-a-bool.yaml", "policy-dry-run-not-a-bool.yaml:2: dry_run must be true or false"},
		{"missing-rules.yaml", "missing-rules.yaml:1: missing rules"},
		{"rules-not-a-list.yaml", "rules-not-a-list.yaml:3: rules must be a list"},
		{"rule-not-a-mapping.yaml", "rule-not-a-mapping.yaml:3: a rule must be a mapping with name, effect, from and to"},

		// Rule fields.
		{"unknown-rule-field.yaml", `unknown-rule-field.yaml:5: rule users: unknown field "form" (want name, effect, from, to, at, subject, dry_run or require_token)`},
		{"duplicate-rule-field.yaml", `duplicate-rule-field.yaml:7: rule users: duplicate field "from" (first on line 5)`},
		{"merge-key.yaml", "merge-key.yaml:8: rule users2: field names must be strings"},
		{"missing-name.yaml", "missing-name.yaml:3: rule (unnamed): has no name"},
		{"empty-name.yaml", "empty-name.yaml:3: rule (unnamed): has no name"},
		{"name-not-a-string.yaml", "name-not-a-string.yaml:3: rule (unnamed): name must be a string"},
		{"name-with-space.yaml", `name-with-space.yaml:3: rule "all users": name must not contain white space or control characters`},
		{"name-with-line-break.yaml", `name-with-line-break.yaml:3: rule "users\nadmin": name must not contain white space or control characters`},
		{"duplicate-rule-name.yaml", "duplicate-rule-name.yaml:12: rule users: duplicate rule name (first declared at testdata/duplicate-rule-name.yaml:3)"},
		{"missing-effect.yaml", "missing-effect.yaml:3: rule users: has no effect (want allow or deny)"},
		{"unknown-effect.yaml", `unknown-effect.yaml:4: rule users: effect "permit": want allow or deny`},
		{"effect-not-a-string.yaml", "effect-not-a-string.yaml:4: rule users: effect must be allow or deny"},
		{"missing-from.yaml", "missing-from.yaml:3: rule users: has no callers (from)"},
		{"empty-from.yaml", "empty-from.yaml:5: rule users: has no callers (from)"},
		{"null-from.yaml", "null-from.yaml:5: rule users: has no callers (from)"},
		{"from-not-a-list.yaml", "from-not-a-list.yaml:5: rule users: from must be a list of caller patterns"},
		{"caller-not-a-string.yaml", "caller-not-a-string.yaml:7: rule users: from entries must be strings"},
		{"invalid-caller.yaml", `invalid-caller.yaml:7: rule users: caller "spiffe://shop.example/user/bob*": wildcards must be a whole path segment (* or a trailing **)`},
		{"caller-wrong-scheme.yaml", `caller-wrong-scheme.yaml:5: rule users: caller "https://shop.example/user/alice": must start with spiffe://`},
		{"missing-to.yaml", "missing-to.yaml:3: rule users: has no methods (to)"},
		{"empty-to.yaml", "empty-to.yaml:6: rule users: has no methods (to)"},
		{"invalid-method.yaml", `invalid-method.yaml:8: rule users: method "/shop.gateway.v1.StorefrontService/List*": method name "List*" is not a protobuf identifier (wildcards: /package.Service/* or *)`},
		{"empty-at.yaml", "empty-at.yaml:7: rule users: has no servers (at)"},
		{"invalid-at.yaml", `invalid-at.yaml:9: rule users: at: caller "shop.example/ns/shop/sa/orders": must start with spiffe://`},
		{"method-not-a-string.yaml", "method-not-a-string.yaml:6: rule users: to entries must be strings"},
		{"dry-run-on-allow.yaml", "dry-run-on-allow.yaml:5: rule users: dry_run applies to deny rules only"},
		{"dry-run-not-a-bool.yaml", "dry-run-not-a-bool.yaml:5: rule no-mallory: dry_run must be true or false"},
		{"require-token-on-deny.yaml", "require-token-on-deny.yaml:6: rule no-mallory: require_token applies to allow rules only"},
		{"require-token-not-a-bool.yaml", "require-token-not-a-bool.yaml:7: rule alice-orders: require_token must be true or false"},
	}
	for _, tc := range testCases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("testdata", tc.file)
			_, err := policy.LoadFile(path)
			if want := "testdata/" + tc.want; err == nil || err.Error() != want {
				t.Fatalf("LoadFile(%q) error = %v\nwant %s", path, err, want)
			}
			var pe *policy.ParseError
			if !errors.As(err, &pe) || pe.File != path || pe.Line < 1 {
				t.Errorf("error %#v is not a *ParseError for %s with a line", err, path)
			}
		})
	}
}

// TestLoadFileDefectsCovered checks that every fixture is in a test, so
// that none is left behind.
func TestLoadFileDefectsCovered(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		_, err := policy.LoadFile(name)
		good := filepath.Base(name)[:4] == "good"
		if good && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !good && err == nil {
			t.Errorf("%s: no error for a file named by a defect", name)
		}
	}
}

func TestLoadFileGood(t *testing.T) {
	t.Parallel()
	const path = "testdata/good.yaml"
	got, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Policy{
		Source: path,
		Rules: []policy.Rule{
			{
				Name:   "users-call-gateway",
				Effect: policy.Allow,
				From:   []string{"spiffe://shop.example/user/*"},
				To:     []string{"/shop.gateway.v1.StorefrontService/*", "/grpc.health.v1.Health/Check"},
				Source: path + ":6",
			},
			{
				Name:   "admin-everywhere",
				Effect: policy.Allow,
				From:   []string{"spiffe://shop.example/ns/ops/sa/admin"},
				To:     []string{"*"},
				Source: path + ":11",
			},
			{
				Name:   "no-mallory",
				Effect: policy.Deny,
				From:   []string{"spiffe://shop.example/user/mallory"},
				To:     []string{"*"},
				Source: path + ":18",
			},
			{
				Name:   "try-no-bob-v2",
				Effect: policy.Deny,
				DryRun: true,
				From:   []string{"spiffe://shop.example/user/bob"},
				To:     []string{"/shop.gateway.v2.StorefrontService/*"},
				Source: path + ":23",
			},
			{
				Name:   "shop-workloads",
				Effect: policy.Allow,
				From:   []string{"spiffe://shop.example/ns/shop/**", "spiffe://shop.example"},
				To:     []string{"/grpc.health.v1.Health/Check"},
				Source: path + ":29",
			},
			{
				Name:   "users-reflect-on-gateway",
				Effect: policy.Allow,
				From:   []string{"spiffe://shop.example/user/*"},
				To:     []string{"/grpc.reflection.v1.ServerReflection/*"},
				At:     []string{"spiffe://shop.example/ns/shop/sa/gateway"},
				Source: path + ":34",
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadFile(%q) =\n%+v\nwant\n%+v", path, got, want)
	}

	// The parsed policy compiles and decides as written.
	e := compile(t, got)
	testCases := []struct {
		method, caller string
		want           policy.Decision
	}{
		{gwList, "spiffe://shop.example/user/alice", policy.Decision{Outcome: policy.Allowed, Rule: "users-call-gateway"}},
		{gwList, "spiffe://shop.example/user/mallory", policy.Decision{Outcome: policy.Denied, Rule: "no-mallory"}},
		{charge, "spiffe://shop.example/user/alice", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{refund, "spiffe://shop.example/ns/ops/sa/admin", policy.Decision{Outcome: policy.Allowed, Rule: "admin-everywhere"}},
		{"/shop.gateway.v2.StorefrontService/ListProducts", "spiffe://shop.example/user/bob", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{"/grpc.health.v1.Health/Check", "spiffe://shop.example/ns/shop/sa/orders", policy.Decision{Outcome: policy.Allowed, Rule: "shop-workloads"}},
		{"/grpc.health.v1.Health/Check", "spiffe://shop.example/user/alice", policy.Decision{Outcome: policy.Allowed, Rule: "users-call-gateway"}},
	}
	for _, tc := range testCases {
		if got := e.Decide(tc.method, spiffeid.RequireFromString(tc.caller)); got != tc.want {
			t.Errorf("Decide(%q, %q) = %+v, want %+v", tc.method, tc.caller, got, tc.want)
		}
	}

	// The rule with an at list applies on the gateway only.
	const reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	gateway, err := policy.Compile(got, policy.ForServer(spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/gateway")))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		e    *policy.Engine
		want policy.Decision
	}{
		"gateway":  {gateway, policy.Decision{Outcome: policy.Allowed, Rule: "users-reflect-on-gateway"}},
		"anywhere": {e, policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
	} {
		if got := tc.e.Decide(reflect, alice); got != tc.want {
			t.Errorf("%s: alice reflects: %+v, want %+v", name, got, tc.want)
		}
	}
}

func TestLoadFileAliases(t *testing.T) {
	t.Parallel()
	const path = "testdata/good-aliases.yaml"
	got, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users := []string{"spiffe://shop.example/user/alice", "spiffe://shop.example/user/bob"}
	want := policy.Policy{
		Source: path,
		DryRun: true,
		Rules: []policy.Rule{
			{Name: "users", Effect: policy.Allow, From: users, To: []string{gwList}, Source: path + ":4"},
			{Name: "users-health", Effect: policy.Allow, From: users, To: []string{"/grpc.health.v1.Health/Check"}, Source: path + ":10"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadFile(%q) =\n%+v\nwant\n%+v", path, got, want)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		data string
		want string // the error, or "" if the policy is valid
	}{
		{"no rules", "version: 1\nrules: []\n", ""},
		{"document markers", "---\nversion: 1\nrules: []\n...\n", ""},
		{"byte order mark", "\uFEFFversion: 1\nrules: []\n", ""},
		{"CRLF line ends", "version: 1\r\nrules:\r\n  - name: a\r\n    effect: allow\r\n    from: [spiffe://td]\r\n    to: [/x.Y/Z, /x.Y/W\r\n", "f:6: did not find expected ',' or ']'"},
		{"only a document marker", "---\n", "f:2: empty policy file"},
		{"null rules", "version: 1\nrules:\n", "f:2: rules must be a list"},
		{"scalar document", "policy\n", "f:1: want a mapping with version and rules at the top level"},
		{"float version", "version: 1.0\nrules: []\n", "f:1: version must be an integer"},
		{"null version", "version:\nrules: []\n", "f:1: version must be an integer"},
		{"non-string key", "version: 1\n1: x\nrules: []\n", "f:2: field names must be strings"},
		{"second document broken", "version: 1\nrules: []\n---\n[\n", "f:5: did not find expected node content"},
		{"error before the name field names the rule", "version: 1\nrules:\n  - effect: allow\n    form: []\n    name: late\n", `f:4: rule late: unknown field "form" (want name, effect, from, to, at, subject, dry_run or require_token)`},
		{"dry_run false on an allow rule", "version: 1\nrules:\n  - name: a\n    effect: allow\n    dry_run: false\n    from: [spiffe://td]\n    to: [\"*\"]\n", ""},
		{"delete character", "version: 1\nrules: [] # \x7f\n", "f:2: character U+007F is not allowed in YAML"},
		{"anchor cycle", "version: 1\nrules: &r [*r]\n", "f:2: a rule must be a mapping with name, effect, from and to"},
		{"alias to a list of lists", "version: 1\nx: &l [[a]]\n", `f:2: unknown field "x" (want version, dry_run, txn_issuers or rules)`},
		{"caller in an anchor", "version: 1\nrules:\n  - name: a\n    effect: allow\n    from: &c [spiffe://td/a*]\n    to: [\"*\"]\n", `f:5: rule a: caller "spiffe://td/a*": wildcards must be a whole path segment (* or a trailing **)`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := policy.Parse("f", []byte(tc.data))
			if got := errString(err); got != tc.want {
				t.Fatalf("Parse error = %q\nwant %q", got, tc.want)
			}
			if err == nil {
				if _, err := policy.Compile(p); err != nil {
					t.Errorf("Compile of a parsed policy: %v", err)
				}
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := policy.LoadFile(path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(%q) error = %v, want one that is os.ErrNotExist", path, err)
	}
}
