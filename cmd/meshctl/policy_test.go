package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// samplePolicy is a small policy in the shape of the sample mesh's.
const samplePolicy = `version: 1
rules:
  - name: users-gateway
    effect: allow
    from: ["spiffe://shop.example/user/*"]
    to: ["/shop.gateway.v1.StorefrontService/*"]
  - name: gateway-orders
    effect: allow
    from: ["spiffe://shop.example/ns/shop/sa/gateway"]
    to: ["/shop.orders.v1.OrderService/*"]
  - name: admin-refund
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/shop.payments.v1.PaymentService/Refund"]
  - name: no-mallory
    effect: deny
    from: ["spiffe://shop.example/user/mallory"]
    to: ["*"]
`

// writePolicy writes content to a file called name in a fresh temporary
// directory and returns its path.
func writePolicy(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyLint(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", samplePolicy)
	methods := writePolicy(t, "methods.txt", `# served by the storefront
/shop.gateway.v1.StorefrontService/ListProducts
/shop.inventory.v1.InventoryService/Restock   # nobody may call it yet

/shop.payments.v1.PaymentService/Refund
`)

	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		r := runMeshctl(t, "policy", "lint", file, "--methods", methods, "--protos=false", "--standard=false")
		if r.code != 0 || r.stderr != "" {
			t.Errorf("exit %d, stderr %q; want 0 and none", r.code, r.stderr)
		}
		want := file + ": ok (4 rules)\n" +
			"uncovered: /shop.inventory.v1.InventoryService/Restock\n" +
			"warning: " + file + ": 1 of 3 methods not covered by any allow rule (--strict makes this an error)\n"
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
	})

	t.Run("strict", func(t *testing.T) {
		t.Parallel()
		r := runMeshctl(t, "policy", "lint", "--strict", file, "--methods", methods, "--standard=false")
		if r.code != 1 {
			t.Errorf("exit code = %d, want 1", r.code)
		}
		if want := "meshctl: " + file + ": 1 of 3 methods not covered by any allow rule\n"; r.stderr != want {
			t.Errorf("stderr = %q, want %q", r.stderr, want)
		}
		if !strings.Contains(r.stdout, "uncovered: /shop.inventory.v1.InventoryService/Restock\n") {
			t.Errorf("stdout lacks the uncovered method:\n%s", r.stdout)
		}
	})

	t.Run("all covered", func(t *testing.T) {
		t.Parallel()
		covered := writePolicy(t, "methods.txt", "/shop.orders.v1.OrderService/GetOrder\n")
		r := runMeshctl(t, "policy", "lint", "--strict", "--protos=false", "--standard=false", file, "--methods", covered)
		if r.code != 0 || r.stdout != file+": ok (4 rules)\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("standard methods", func(t *testing.T) {
		t.Parallel()
		// A server serves health and reflection beside the methods listed:
		// lint --methods checks them too, as the server does, so a policy
		// lint passes is not one the server refuses (it once dropped them).
		covered := writePolicy(t, "methods.txt", "/shop.orders.v1.OrderService/GetOrder\n")
		r := runMeshctl(t, "policy", "lint", "--strict", "--protos=false", file, "--methods", covered)
		if want := "meshctl: " + file + ": 5 of 6 methods not covered by any allow rule\n"; r.code != 1 || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
		}
		for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List", "/grpc.health.v1.Health/Watch",
			"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
			if !strings.Contains(r.stdout, "uncovered: "+m+"\n") {
				t.Errorf("stdout lacks %s:\n%s", m, r.stdout)
			}
		}
		withHealth := writePolicy(t, "policy.yaml", samplePolicy+`  - name: ops-standard
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`)
		if r := runMeshctl(t, "policy", "lint", "--strict", "--protos=false", withHealth, "--methods", covered); r.code != 0 || r.stdout != withHealth+": ok (5 rules)\n" {
			t.Errorf("a policy covering the standard methods: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("sample mesh", func(t *testing.T) {
		t.Parallel()
		// The sample mesh's protos allow orders to call Reserve and
		// Charge; nothing allows Restock or health checks.
		out := mustRun(t, "policy", "lint", "--sample", file)
		for _, want := range []string{
			"merged with 7 rules from the sample mesh's protos\n",
			"uncovered: /shop.inventory.v1.InventoryService/Restock\n",
			"uncovered: /grpc.health.v1.Health/Check\n",
			"uncovered: /grpc.reflection.v1.ServerReflection/ServerReflectionInfo\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("lint output lacks %q:\n%s", want, out)
			}
		}
		for _, covered := range []string{"gateway.v1.StorefrontService", "OrderService", "PaymentService", "InventoryService/Reserve"} {
			if strings.Contains(out, covered) {
				t.Errorf("lint reports covered %s as uncovered:\n%s", covered, out)
			}
		}

		// The file alone covers neither.
		out = mustRun(t, "policy", "lint", "--sample", "--protos=false", file)
		for _, want := range []string{
			"uncovered: /shop.inventory.v1.InventoryService/Reserve\n",
			"uncovered: /shop.payments.v1.PaymentService/Charge\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("lint --protos=false output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("unused deny", func(t *testing.T) {
		t.Parallel()
		// A deny rule whose service is misspelt matches no served method,
		// so the broader allow lets mallory through: lint says so, as a
		// server does at start, and a deny that matches stays quiet.
		typo := writePolicy(t, "typo.yaml", samplePolicy+`  - name: no-mallory-typo
    effect: deny
    from: ["spiffe://shop.example/user/mallory"]
    to: ["/shop.gateway.v1.StoreFrontService/*"]
`)
		r := runMeshctl(t, "policy", "lint", "--protos=false", "--standard=false", typo, "--methods", methods)
		want := typo + ": ok (5 rules)\n" +
			"unused deny: no-mallory-typo\n" +
			"warning: " + typo + ": 1 deny rule matches none of the 3 methods checked, so it refuses nothing there (a typo in its to:? a rule meant for other servers says so with at:)\n" +
			"uncovered: /shop.inventory.v1.InventoryService/Restock\n"
		if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
			t.Errorf("exit %d, stdout:\n%s\nwant it to start with:\n%s", r.code, r.stdout, want)
		}
		two := writePolicy(t, "two.yaml", samplePolicy+`  - name: no-mallory-typo
    effect: deny
    from: ["spiffe://shop.example/user/mallory"]
    to: ["/shop.gateway.v1.StoreFrontService/*"]
  - name: no-eve-typo
    effect: deny
    from: ["spiffe://shop.example/user/eve"]
    to: ["/shop.orders.v1.OrderServices/*"]
`)
		// --strict fails on it, as a server does at start.
		r = runMeshctl(t, "policy", "lint", "--strict", "--protos=false", "--standard=false", typo, "--methods", methods)
		if want := "meshctl: " + typo + ": 1 deny rule matches none of the 3 methods checked, so it refuses nothing there (a typo in its to:? a rule meant for other servers says so with at:); " +
			typo + ": 1 of 3 methods not covered by any allow rule\n"; r.code != 1 || r.stderr != want {
			t.Errorf("--strict: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
		}
		r = runMeshctl(t, "policy", "lint", "--protos=false", "--standard=false", two, "--methods", methods)
		if want := "warning: " + two + ": 2 deny rules match none of the 3 methods checked, so they refuse nothing there (a typo in their to:? a rule meant for other servers says so with at:)\n"; !strings.Contains(r.stdout, "unused deny: no-mallory-typo\nunused deny: no-eve-typo\n"+want) {
			t.Errorf("stdout:\n%s\nwant the two rules, then:\n%s", r.stdout, want)
		}
		// Without services lint knows of none to check against.
		if out := mustRun(t, "policy", "lint", typo); strings.Contains(out, "unused deny") {
			t.Errorf("lint without services reports unused denies:\n%s", out)
		}
	})

	t.Run("file alone", func(t *testing.T) {
		t.Parallel()
		// Without protos or --methods, only the standard methods are
		// served as far as lint knows, and it says so.
		out := mustRun(t, "policy", "lint", file)
		want := file + ": ok (4 rules)\n" +
			"note: no services given (--proto-descriptors SET, --sample or --methods FILE): coverage is checked for the standard health and reflection methods only\n"
		if !strings.HasPrefix(out, want) || !strings.Contains(out, "uncovered: /grpc.health.v1.Health/Check\n") || strings.Contains(out, "/shop.") {
			t.Errorf("stdout:\n%s\nwant it to start with:\n%s", out, want)
		}
		// --standard=false leaves nothing to check: lint says so.
		if out := mustRun(t, "policy", "lint", "--standard=false", file); out != file+": ok (4 rules)\nnote: no methods to check (--standard=false and no services given)\n" {
			t.Errorf("--standard=false alone: stdout %q", out)
		}
	})
}

func TestPolicyLintErrors(t *testing.T) {
	t.Parallel()
	bad := writePolicy(t, "bad.yaml", `version: 1
rules:
  - name: users
    effect: allow
    from: ["spiffe://shop.example/user/al*"]
    to: ["*"]
`)
	good := writePolicy(t, "policy.yaml", samplePolicy)
	badMethods := writePolicy(t, "methods.txt", "/shop.gateway.v1.StorefrontService/ListProducts\n/shop.gateway.v1.StorefrontService/*\n")
	missing := filepath.Join(t.TempDir(), "nope.yaml")

	testCases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{
			name:     "bad caller pattern",
			args:     []string{"policy", "lint", bad},
			wantCode: 1,
			wantErr:  "meshctl: " + bad + `:5: rule users: caller "spiffe://shop.example/user/al*": wildcards must be a whole path segment (* or a trailing **)`,
		},
		{
			name:     "no file",
			args:     []string{"policy", "lint"},
			wantCode: 2,
			wantErr:  "meshctl: policy lint: want exactly one FILE, got 0 arguments (see 'meshctl policy lint --help')",
		},
		{
			name:     "pattern in methods file",
			args:     []string{"policy", "lint", good, "--methods", badMethods},
			wantCode: 1,
			wantErr:  "meshctl: " + badMethods + `:2: method "/shop.gateway.v1.StorefrontService/*": want a method, /package.Service/Method, not a pattern`,
		},
		{
			name:     "explain bad caller",
			args:     []string{"policy", "explain", "--caller", "spiffe://shop.example/user/*", "--method", "/shop.gateway.v1.StorefrontService/ListProducts", good},
			wantCode: 2,
			wantErr:  `meshctl: --caller "spiffe://shop.example/user/*": path segment characters are limited to letters, numbers, dots, dashes, and underscores (want spiffe://TRUST_DOMAIN/PATH)`,
		},
		{
			name:     "explain bad method",
			args:     []string{"policy", "explain", "--caller", "spiffe://shop.example/user/alice", "--method", "shop.gateway.v1.StorefrontService.ListProducts", good},
			wantCode: 2,
			wantErr:  `meshctl: --method "shop.gateway.v1.StorefrontService.ListProducts": want /package.Service/Method, /package.Service/* or *`,
		},
		{
			name:     "explain method pattern",
			args:     []string{"policy", "explain", "--caller", "spiffe://shop.example/user/alice", "--method", "/shop.gateway.v1.StorefrontService/*", good},
			wantCode: 2,
			wantErr:  `meshctl: --method "/shop.gateway.v1.StorefrontService/*": want a method, /package.Service/Method, not a pattern`,
		},
		{
			name:     "explain without caller",
			args:     []string{"policy", "explain", "--method", "/shop.gateway.v1.StorefrontService/ListProducts", good},
			wantCode: 2,
			wantErr:  "meshctl: policy explain: --caller is required (see 'meshctl policy explain --help')",
		},
		{
			name:     "explain unknown flag",
			args:     []string{"policy", "explain", "--from", "spiffe://shop.example/user/alice"},
			wantCode: 2,
			wantErr:  "meshctl: policy explain: flag provided but not defined: -from (see 'meshctl policy explain --help')",
		},
		{
			name:     "diff one file",
			args:     []string{"policy", "diff", good},
			wantCode: 2,
			wantErr:  "meshctl: policy diff: want OLD and NEW files, got 1 arguments (see 'meshctl policy diff --help')",
		},
		{
			name:     "diff bad new file",
			args:     []string{"policy", "diff", good, bad},
			wantCode: 1,
			wantErr:  "meshctl: " + bad + `:5: rule users: caller "spiffe://shop.example/user/al*": wildcards must be a whole path segment (* or a trailing **)`,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, tc.args...)
			if r.code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", r.code, tc.wantCode)
			}
			if got := strings.TrimSuffix(r.stderr, "\n"); got != tc.wantErr {
				t.Errorf("stderr:\n got %s\nwant %s", got, tc.wantErr)
			}
			if strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		r := runMeshctl(t, "policy", "lint", missing)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "meshctl: ") || !strings.Contains(r.stderr, missing) {
			t.Errorf("exit %d, stderr %q; want 1 and a line naming %s", r.code, r.stderr, missing)
		}
	})
}

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", samplePolicy)
	testCases := []struct {
		name, caller, method string
		sample               bool // with --sample
		want                 string
	}{
		{
			name:   "allow",
			caller: "spiffe://shop.example/user/alice",
			method: "/shop.gateway.v1.StorefrontService/PlaceOrder",
			want:   "decision: allow\nrule:     users-gateway\nsource:   " + file + ":3\n",
		},
		{
			name:   "deny rule",
			caller: "spiffe://shop.example/user/mallory",
			method: "/shop.gateway.v1.StorefrontService/PlaceOrder",
			want:   "decision: deny\nrule:     no-mallory\nsource:   " + file + ":15\n",
		},
		{
			name:   "default deny",
			caller: "spiffe://shop.example/user/alice",
			method: "/shop.payments.v1.PaymentService/Charge",
			want:   "decision: deny\nrule:     default-deny (no rule matches)\n",
		},
		{
			name:   "proto rule",
			caller: "spiffe://shop.example/ns/shop/sa/orders",
			method: "/shop.inventory.v1.InventoryService/Reserve",
			sample: true,
			want:   "decision: allow\nrule:     proto:shop.inventory.v1.InventoryService.Reserve\nsource:   proto shop.inventory.v1.InventoryService.Reserve (shop/inventory/v1/inventory.proto)\n",
		},
		{
			name:   "no proto rule without protos",
			caller: "spiffe://shop.example/ns/shop/sa/orders",
			method: "/shop.inventory.v1.InventoryService/Reserve",
			want:   "decision: deny\nrule:     default-deny (no rule matches)\n",
		},
		{
			name:   "segment boundary",
			caller: "spiffe://shop.example/user/alice/phone",
			method: "/shop.gateway.v1.StorefrontService/PlaceOrder",
			want:   "decision: deny\nrule:     default-deny (no rule matches)\n",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"policy", "explain", "--caller", tc.caller, "--method", tc.method, file}
			if tc.sample {
				args = append(args, "--sample")
			}
			out := mustRun(t, args...)
			want := "caller:   " + tc.caller + "\nmethod:   " + tc.method + "\n" + tc.want
			if out != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
			}
		})
	}

	t.Run("dry-run policy", func(t *testing.T) {
		t.Parallel()
		dry := writePolicy(t, "dry.yaml", "dry_run: true\n"+samplePolicy)
		out := mustRun(t, "policy", "explain", dry, "--caller", "spiffe://shop.example/user/alice", "--method", "/shop.payments.v1.PaymentService/Charge")
		if want := "decision: dry_run_deny\nrule:     default-deny (no rule matches)\nnote:     the whole policy is in dry-run: denied calls proceed\n"; !strings.HasSuffix(out, want) {
			t.Errorf("stdout:\n%s\nwant it to end with:\n%s", out, want)
		}
	})
}

func TestPolicyDiff(t *testing.T) {
	t.Parallel()
	oldFile := writePolicy(t, "old.yaml", samplePolicy)

	t.Run("no changes", func(t *testing.T) {
		t.Parallel()
		same := writePolicy(t, "new.yaml", samplePolicy)
		if out := mustRun(t, "policy", "diff", "--sample", oldFile, same); out != "no changes\n" {
			t.Errorf("stdout = %q, want %q", out, "no changes\n")
		}
	})

	t.Run("gain and lose", func(t *testing.T) {
		t.Parallel()
		// Refund moves from admin to the payments operators; users may
		// also charge.
		newPolicy := strings.NewReplacer(
			`from: ["spiffe://shop.example/ns/ops/sa/admin"]`, `from: ["spiffe://shop.example/ns/ops/sa/billing"]`,
			`to: ["/shop.gateway.v1.StorefrontService/*"]`, `to: ["/shop.gateway.v1.StorefrontService/*", "/shop.payments.v1.PaymentService/Charge"]`,
		).Replace(samplePolicy)
		newFile := writePolicy(t, "new.yaml", newPolicy)
		out := mustRun(t, "policy", "diff", "--sample", oldFile, newFile)
		want := "/shop.payments.v1.PaymentService/Charge: spiffe://shop.example/user/x (example of spiffe://shop.example/user/*) gains access (deny by default-deny -> allow by rule users-gateway)\n" +
			"/shop.payments.v1.PaymentService/Refund: spiffe://shop.example/ns/ops/sa/admin loses access (allow by rule admin-refund -> deny by default-deny)\n" +
			"/shop.payments.v1.PaymentService/Refund: spiffe://shop.example/ns/ops/sa/billing gains access (deny by default-deny -> allow by rule admin-refund)\n"
		if out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
		// mallory stays denied everywhere by her deny rule.
		if strings.Contains(out, "mallory") {
			t.Errorf("diff reports a change for mallory:\n%s", out)
		}
	})

	t.Run("wildcards", func(t *testing.T) {
		t.Parallel()
		newFile := writePolicy(t, "new.yaml", samplePolicy+`  - name: shop-health
    effect: allow
    from: ["spiffe://shop.example/ns/shop/**"]
    to: ["/grpc.health.v1.Health/Check"]
  - name: td-list
    effect: allow
    from: ["spiffe://shop.example"]
    to: ["/shop.inventory.v1.InventoryService/*"]
`)
		out := mustRun(t, "policy", "diff", "--sample", oldFile, newFile)
		for _, want := range []string{
			"/grpc.health.v1.Health/Check: spiffe://shop.example/ns/shop/x/y (example of spiffe://shop.example/ns/shop/**) gains access (deny by default-deny -> allow by rule shop-health)\n",
			"/grpc.health.v1.Health/Check: spiffe://shop.example/ns/shop/sa/gateway gains access (deny by default-deny -> allow by rule shop-health)\n",
			"/shop.inventory.v1.InventoryService/*: spiffe://shop.example/x (example of spiffe://shop.example) gains access (deny by default-deny -> allow by rule td-list)\n",
			"/shop.inventory.v1.InventoryService/Reserve: spiffe://shop.example/ns/ops/sa/admin gains access (deny by default-deny -> allow by rule td-list)\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("diff output lacks %q:\n%s", want, out)
			}
		}
	})
}

func TestPolicyHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"policy", "--help"},
		{"policy", "lint", "--help"},
		{"policy", "explain", "-h"},
		{"help", "policy", "diff"},
	} {
		r := runMeshctl(t, args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "meshctl policy") {
			t.Errorf("meshctl %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), r.code, r.stderr, r.stdout)
		}
	}
}

func TestPolicyExplainServer(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", `version: 1
rules:
  - name: users-reflect-on-gateway
    effect: allow
    from: ["spiffe://shop.example/user/*"]
    at: ["spiffe://shop.example/ns/shop/sa/gateway"]
    to: ["/grpc.reflection.v1.ServerReflection/*"]
`)
	method := "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	testCases := []struct {
		name   string
		server []string
		want   string
	}{
		{"at-the-gateway", []string{"--server", "spiffe://shop.example/ns/shop/sa/gateway"}, "decision: allow\nrule:     users-reflect-on-gateway\n"},
		{"at-orders", []string{"--server", "spiffe://shop.example/ns/shop/sa/orders"}, "decision: deny\nrule:     default-deny (no rule matches)\n"},
		{"no-server", nil, "decision: deny\nrule:     default-deny (no rule matches)\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"policy", "explain", "--caller", "spiffe://shop.example/user/alice", "--method", method}, tc.server...)
			if out := mustRun(t, append(args, file)...); !strings.Contains(out, tc.want) {
				t.Errorf("stdout:\n%s\nwant it to contain:\n%s", out, tc.want)
			}
		})
	}
	r := runMeshctl(t, "policy", "explain", "--server", "orders", "--caller", "spiffe://shop.example/user/alice", "--method", method, file)
	if want := "meshctl: --server \"orders\": scheme is missing or invalid\n"; r.code != 2 || r.stderr != want {
		t.Errorf("bad --server: exit %d, stderr %q; want 2, %q", r.code, r.stderr, want)
	}
}

// descriptorSet writes a FileDescriptorSet holding the sample's files
// paths, and with withImports their imports too, as `buf build -o` would,
// and returns its file name. The files come from the sample's descriptor
// set: this test binary links no generated code.
func descriptorSet(t *testing.T, withImports bool, paths ...string) string {
	t.Helper()
	var all descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(sample.ProtoDescriptors(), &all); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range all.GetFile() {
		byName[f.GetName()] = f
	}
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(name string)
	add = func(name string) {
		f, ok := byName[name]
		if !ok {
			t.Fatalf("%s is not in the sample's descriptor set", name)
		}
		if seen[name] {
			return
		}
		seen[name] = true
		if withImports {
			for _, dep := range f.GetDependency() {
				add(dep)
			}
		}
		set.File = append(set.File, f)
	}
	for _, p := range paths {
		add(p)
	}
	data, err := proto.Marshal(&set)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestNoGeneratedCode: meshctl works for anyone's protos, so it links no
// generated code, the sample's and trustmesh.v1's included; it reads access
// options from descriptor sets instead.
func TestNoGeneratedCode(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list meshctl's dependencies: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", ".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/meshctl: %v", err)
	}
	var offending []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/trustmesh/trustmesh/gen/") {
			offending = append(offending, pkg)
		}
	}
	if len(offending) > 0 {
		t.Errorf("cmd/meshctl depends on generated code: %s", strings.Join(offending, ", "))
	}
	// Nor does this test binary, so that the tests here read options the
	// way meshctl does.
	if _, err := protoregistry.GlobalTypes.FindExtensionByName("trustmesh.v1.method_access"); err == nil {
		t.Error("trustmesh.v1.method_access is registered in meshctl's tests: some import links generated code")
	}
}

// TestPolicyProtoFlagErrors: --sample and --proto-descriptors exclude each
// other, and explain needs a FILE unless --sample names the sample's.
func TestPolicyProtoFlagErrors(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", samplePolicy)
	set := descriptorSet(t, true, "shop/orders/v1/orders.proto")
	testCases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"lint both", []string{"policy", "lint", "--sample", "--proto-descriptors", set, file},
			"meshctl: policy lint: --sample and --proto-descriptors are alternatives: give one (see 'meshctl policy lint --help')"},
		{"diff both", []string{"policy", "diff", "--sample", "--proto-descriptors", set, file, file},
			"meshctl: policy diff: --sample and --proto-descriptors are alternatives: give one (see 'meshctl policy diff --help')"},
		{"explain without file", []string{"policy", "explain", "--caller", "spiffe://shop.example/user/alice", "--method", "/shop.payments.v1.PaymentService/Charge"},
			"meshctl: policy explain: want a FILE, or --sample for services/policy.yaml (see 'meshctl policy explain --help')"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, tc.args...)
			if r.code != 2 || r.stderr != tc.wantErr+"\n" {
				t.Errorf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, tc.wantErr)
			}
		})
	}
}

// TestPolicyExplainSampleFile: with --sample and no FILE, explain reads the
// sample's policy file from the repository root. Not parallel: it changes
// the working directory.
func TestPolicyExplainSampleFile(t *testing.T) {
	t.Chdir(testtool.RepoRoot(t))
	out := mustRun(t, "policy", "explain", "--sample", "--caller", "spiffe://shop.example/ns/ops/sa/admin", "--method", "/shop.payments.v1.PaymentService/Refund")
	if !strings.Contains(out, "decision: allow\n") || !strings.Contains(out, "source:   services/policy.yaml:") {
		t.Errorf("stdout:\n%s\nwant an allow by a rule of services/policy.yaml", out)
	}
}

// TestPolicyDiffProtoDescriptors: diff takes the methods and the rules of
// a descriptor set of one's own.
func TestPolicyDiffProtoDescriptors(t *testing.T) {
	t.Parallel()
	set := descriptorSet(t, true, "shop/inventory/v1/inventory.proto")
	oldFile := writePolicy(t, "old.yaml", "version: 1\nrules: []\n")
	newFile := writePolicy(t, "new.yaml", `version: 1
rules:
  - name: ops-inventory
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/shop.inventory.v1.InventoryService/*"]
`)
	out := mustRun(t, "policy", "diff", "--proto-descriptors", set, oldFile, newFile)
	for _, want := range []string{
		// Restock is allowed by no proto rule: admin gains it.
		"/shop.inventory.v1.InventoryService/Restock: spiffe://shop.example/ns/ops/sa/admin gains access (deny by default-deny -> allow by rule ops-inventory)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	// Reserve's proto rule (orders) is merged into both: orders never
	// changes.
	if strings.Contains(out, "sa/orders") {
		t.Errorf("diff reports a change for orders, whose access comes from the protos:\n%s", out)
	}
}

func TestPolicyLintProtoDescriptors(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", `version: 1
rules:
  - name: admin-health
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`)
	set := descriptorSet(t, true, "shop/orders/v1/orders.proto")
	out := mustRun(t, "policy", "lint", "--proto-descriptors", set, file)
	want := file + ": ok (1 rule)\nmerged with 3 rules from " + set + "\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}

	noImports := descriptorSet(t, false, "shop/orders/v1/orders.proto")
	r := runMeshctl(t, "policy", "lint", "--proto-descriptors", noImports, file)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "meshctl: --proto-descriptors "+noImports+": ") || !strings.Contains(r.stderr, "(build it with its imports: buf build -o FILE)") {
		t.Errorf("set without imports: exit %d, stderr %q", r.code, r.stderr)
	}
	garbage := writePolicy(t, "garbage.binpb", "not protobuf at all")
	r = runMeshctl(t, "policy", "lint", "--proto-descriptors", garbage, file)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "meshctl: --proto-descriptors "+garbage+": not a FileDescriptorSet: ") {
		t.Errorf("garbage set: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPolicySubject: explain takes --subject, and diff compares decisions
// made on behalf of example subjects too.
func TestPolicySubject(t *testing.T) {
	t.Parallel()
	const withSubject = `version: 1
txn_issuers: ["spiffe://shop.example/ns/shop/sa/gateway"]
rules:
  - name: gateway-for-users
    effect: allow
    from: ["spiffe://shop.example/ns/shop/sa/gateway"]
    to: ["/shop.orders.v1.OrderService/GetOrder"]
    subject: ["spiffe://shop.example/user/*"]
`
	file := writePolicy(t, "subject.yaml", withSubject)
	explain := func(extra ...string) string {
		return mustRun(t, append([]string{"policy", "explain", file, "--caller", "spiffe://shop.example/ns/shop/sa/gateway",
			"--method", "/shop.orders.v1.OrderService/GetOrder"}, extra...)...)
	}
	if out, want := explain("--subject", "spiffe://shop.example/user/alice"), "caller:   spiffe://shop.example/ns/shop/sa/gateway\nsubject:  spiffe://shop.example/user/alice\nmethod:   /shop.orders.v1.OrderService/GetOrder\ndecision: allow\nrule:     gateway-for-users\nsource:   "+file+":4\n"; out != want {
		t.Errorf("explain with a subject:\n%s\nwant:\n%s", out, want)
	}
	if out := explain(); !strings.Contains(out, "decision: deny\n") || !strings.Contains(out, "subject:  required (a transaction token minted by one of txn_issuers") {
		t.Errorf("explain without a subject:\n%s", out)
	}
	widened := writePolicy(t, "widened.yaml", strings.Replace(withSubject, `subject: ["spiffe://shop.example/user/*"]`, `subject: ["spiffe://shop.example/user/*", "spiffe://shop.example/ns/ops/sa/admin"]`, 1))
	out := mustRun(t, "policy", "diff", file, widened)
	if want := "/shop.orders.v1.OrderService/GetOrder: spiffe://shop.example/ns/shop/sa/gateway for spiffe://shop.example/ns/ops/sa/admin gains access (deny by rule gateway-for-users -> allow by rule gateway-for-users)\n"; out != want {
		t.Errorf("diff:\n%s\nwant:\n%s", out, want)
	}
	// A change in which no subject plays a part is reported once, not
	// again on behalf of every example subject.
	refund := writePolicy(t, "refund.yaml", withSubject+`  - name: admin-refund
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/admin"]
    to: ["/shop.payments.v1.PaymentService/Refund"]
`)
	out = mustRun(t, "policy", "diff", file, refund)
	if want := "/shop.payments.v1.PaymentService/Refund: spiffe://shop.example/ns/ops/sa/admin gains access (deny by default-deny -> allow by rule admin-refund)\n"; out != want {
		t.Errorf("diff:\n%s\nwant:\n%s", out, want)
	}
}
