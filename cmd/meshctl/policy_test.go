package main

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		r := runMeshctl(t, "policy", "lint", file, "--methods", methods, "--protos=false")
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
		r := runMeshctl(t, "policy", "lint", "--strict", file, "--methods", methods)
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
		r := runMeshctl(t, "policy", "lint", "--strict", "--protos=false", file, "--methods", covered)
		if r.code != 0 || r.stdout != file+": ok (4 rules)\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("sample mesh", func(t *testing.T) {
		t.Parallel()
		// The sample mesh's protos allow orders to call Reserve and
		// Charge; nothing allows Restock or health checks.
		out := mustRun(t, "policy", "lint", file)
		for _, want := range []string{
			"merged with ",
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
		out = mustRun(t, "policy", "lint", "--protos=false", file)
		for _, want := range []string{
			"uncovered: /shop.inventory.v1.InventoryService/Reserve\n",
			"uncovered: /shop.payments.v1.PaymentService/Charge\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("lint --protos=false output lacks %q:\n%s", want, out)
			}
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
			want:   "decision: allow\nrule:     proto:shop.inventory.v1.InventoryService.Reserve\nsource:   proto shop.inventory.v1.InventoryService.Reserve (shop/inventory/v1/inventory.proto)\n",
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
			out := mustRun(t, "policy", "explain", "--caller", tc.caller, "--method", tc.method, file)
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
		if out := mustRun(t, "policy", "diff", oldFile, same); out != "no changes\n" {
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
		out := mustRun(t, "policy", "diff", oldFile, newFile)
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
		out := mustRun(t, "policy", "diff", oldFile, newFile)
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

// descriptorSet writes a FileDescriptorSet holding path and its imports, as
// `buf build -o` would, and returns its file name.
func descriptorSet(t *testing.T, withImports bool, paths ...string) string {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		if withImports {
			for i := range fd.Imports().Len() {
				add(fd.Imports().Get(i).FileDescriptor)
			}
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, p := range paths {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(p)
		if err != nil {
			t.Fatal(err)
		}
		add(fd)
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
