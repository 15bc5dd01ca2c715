package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// result is what one run of meshctl produced.
type result struct {
	code           int
	stdout, stderr string
}

func runMeshctl(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun runs meshctl and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := runMeshctl(t, args...)
	if r.code != 0 {
		t.Fatalf("meshctl %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func TestCertsInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")

	out := mustRun(t, "certs", "init", "--dir", dir, "--ttl", "2h")
	for _, want := range []string{
		"created CA spiffe://shop.example in " + dir,
		"wrote " + filepath.Join(dir, "bundle.pem"),
		"wrote " + filepath.Join(dir, "ca-key.pem"),
		"issued spiffe://shop.example/ns/shop/sa/gateway",
		"wrote " + filepath.Join(dir, "gateway.pem"),
		"wrote " + filepath.Join(dir, "gateway-key.pem"),
		"issued spiffe://shop.example/ns/ops/sa/admin",
		"issued spiffe://shop.example/user/alice",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("init output lacks %q:\n%s", want, out)
		}
	}
	info, err := os.Stat(filepath.Join(dir, "orders-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("orders-key.pem mode = %v, want 0600", info.Mode().Perm())
	}
	bundle := readFile(t, filepath.Join(dir, "bundle.pem"))

	out = mustRun(t, "certs", "init", "--dir", dir)
	if !strings.HasPrefix(out, "kept existing CA spiffe://shop.example in "+dir) {
		t.Errorf("second init output does not start with the kept CA:\n%s", out)
	}
	if strings.Contains(out, "bundle.pem") {
		t.Errorf("second init claims to write bundle.pem:\n%s", out)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "bundle.pem")), bundle) {
		t.Error("second init changed bundle.pem")
	}

	out = mustRun(t, "certs", "init", "--dir", dir, "--force")
	if !strings.HasPrefix(out, "created CA spiffe://shop.example in "+dir) {
		t.Errorf("init --force output does not start with a new CA:\n%s", out)
	}
	if bytes.Equal(readFile(t, filepath.Join(dir, "bundle.pem")), bundle) {
		t.Error("init --force kept bundle.pem")
	}

	// The fresh SVIDs chain to the fresh bundle.
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "payments.pem"))
	if !strings.Contains(out, "chains to bundle: yes") {
		t.Errorf("inspect after --force:\n%s", out)
	}
}

func TestCertsInitTrustDomain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := mustRun(t, "certs", "init", "--dir", dir, "--trust-domain", "acme.test", "--dns", "orders.internal")
	if !strings.Contains(out, "issued spiffe://acme.test/ns/shop/sa/orders") {
		t.Errorf("init output:\n%s", out)
	}
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "orders.pem"))
	for _, want := range []string{"dns sans:         orders, localhost, orders.internal", "chains to bundle: yes (trust domain acme.test)"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

// TestCertsInitIdentities issues identities of one's own instead of the
// sample mesh's.
func TestCertsInitIdentities(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := mustRun(t, "certs", "init", "--dir", dir, "--trust-domain", "example.org",
		"--workloads", "api=/ns/prod/sa/api", "--workloads", "worker=/ns/prod/sa/worker", "--identities", "bob=/user/bob")
	var issued []string
	for _, line := range strings.Split(out, "\n") {
		if id, ok := strings.CutPrefix(line, "issued "); ok {
			issued = append(issued, strings.Fields(id)[0])
		}
	}
	if want := []string{"spiffe://example.org/ns/prod/sa/api", "spiffe://example.org/ns/prod/sa/worker", "spiffe://example.org/user/bob"}; !slices.Equal(issued, want) {
		t.Errorf("issued %q, want %q:\n%s", issued, want, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "gateway.pem")); !os.IsNotExist(err) {
		t.Errorf("gateway.pem written with --workloads given: %v", err)
	}
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "api.pem"))
	for _, want := range []string{"dns sans:         api, localhost", "ip sans:          127.0.0.1", "chains to bundle: yes (trust domain example.org)"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect api.pem lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "certs", "inspect", filepath.Join(dir, "bob.pem")); !strings.Contains(out, "dns sans:         none") {
		t.Errorf("inspect bob.pem: want no DNS SANs:\n%s", out)
	}

	// Empty lists: the CA alone.
	caOnly := t.TempDir()
	out = mustRun(t, "certs", "init", "--dir", caOnly, "--workloads", "", "--identities", "")
	if strings.Contains(out, "issued") {
		t.Errorf("init with empty lists issued SVIDs:\n%s", out)
	}
	if entries, err := os.ReadDir(caOnly); err != nil || len(entries) != 4 {
		t.Errorf("%s holds %d entries (%v), want bundle.pem, ca-key.pem, jwt-key.pem and bundle.json", caOnly, len(entries), err)
	}

	testCases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no path", []string{"--workloads", "api"}, 2,
			`meshctl: certs init: invalid value "api" for flag -workloads: "api": want NAME=/PATH, e.g. orders=/ns/shop/sa/orders (see 'meshctl certs init --help')`},
		{"relative path", []string{"--identities", "bob=user/bob"}, 2,
			`meshctl: certs init: invalid value "bob=user/bob" for flag -identities: "bob=user/bob": want NAME=/PATH, e.g. orders=/ns/shop/sa/orders (see 'meshctl certs init --help')`},
		{"bad path", []string{"--workloads", "api=/ns//api"}, 2,
			`meshctl: --workloads "api=/ns//api": path cannot contain empty segments`},
		{"twice", []string{"--workloads", "api=/ns/prod/sa/api", "--identities", "api=/user/api"}, 1,
			`meshctl: certs: init %s: identity "api": listed twice`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "dev")
			r := runMeshctl(t, append([]string{"certs", "init", "--dir", dir}, tc.args...)...)
			want := tc.wantErr
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, dir)
			}
			if r.code != tc.wantCode || strings.TrimSuffix(r.stderr, "\n") != want {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tc.wantCode, want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a failed init created %s: %v", dir, err)
			}
		})
	}
}

func TestCertsIssue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, "certs", "init", "--dir", dir)

	out := mustRun(t, "certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/user/bob", "--name", "bob",
		"--dns", "bob.local,bob", "--dns", "b", "--ip", "10.0.0.1", "--ttl", "1h")
	if !strings.HasPrefix(out, "issued spiffe://shop.example/user/bob (expires ") ||
		!strings.Contains(out, "wrote "+filepath.Join(dir, "bob.pem")) ||
		!strings.Contains(out, "wrote "+filepath.Join(dir, "bob-key.pem")) {
		t.Errorf("issue output:\n%s", out)
	}
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "bob.pem"))
	for _, want := range []string{
		"spiffe id:        spiffe://shop.example/user/bob",
		"dns sans:         bob.local, bob, b",
		"ip sans:          10.0.0.1",
		"chains to bundle: yes (trust domain shop.example)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, "certs", "init", "--dir", dir)
	empty := t.TempDir()

	testCases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{
			name:     "no command",
			args:     nil,
			wantCode: 2,
			wantErr:  "meshctl: missing command (see 'meshctl --help')",
		},
		{
			name:     "unknown command",
			args:     []string{"frobnicate"},
			wantCode: 2,
			wantErr:  `meshctl: unknown command "frobnicate" (see 'meshctl --help')`,
		},
		{
			name:     "unknown certs subcommand",
			args:     []string{"certs", "renew"},
			wantCode: 2,
			wantErr:  `meshctl: certs: unknown command "renew" (see 'meshctl certs --help')`,
		},
		{
			name:     "certs without subcommand",
			args:     []string{"certs"},
			wantCode: 2,
			wantErr:  "meshctl: certs: missing command (see 'meshctl certs --help')",
		},
		{
			name:     "unknown flag",
			args:     []string{"certs", "init", "--bogus"},
			wantCode: 2,
			wantErr:  "meshctl: certs init: flag provided but not defined: -bogus (see 'meshctl certs init --help')",
		},
		{
			name:     "init extra argument",
			args:     []string{"certs", "init", "--dir", dir, "extra"},
			wantCode: 2,
			wantErr:  `meshctl: certs init: unexpected argument "extra" (see 'meshctl certs init --help')`,
		},
		{
			name:     "zero TTL",
			args:     []string{"certs", "init", "--dir", dir, "--ttl", "0s"},
			wantCode: 2,
			wantErr:  "meshctl: --ttl 0s: must be positive",
		},
		{
			name:     "TTL over a year",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/x", "--name", "x", "--ttl", "9000h"},
			wantCode: 2,
			wantErr:  "meshctl: --ttl 9000h0m0s: must be at most 8760h0m0s (1 year)",
		},
		{
			name:     "malformed TTL",
			args:     []string{"certs", "init", "--ttl", "soon"},
			wantCode: 2,
			wantErr:  `meshctl: certs init: invalid value "soon" for flag -ttl: parse error (see 'meshctl certs init --help')`,
		},
		{
			name:     "bad trust domain",
			args:     []string{"certs", "init", "--dir", dir, "--trust-domain", "Shop.example"},
			wantCode: 2,
			wantErr:  `meshctl: --trust-domain "Shop.example": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`,
		},
		{
			name:     "issue without id",
			args:     []string{"certs", "issue", "--dir", dir, "--name", "x"},
			wantCode: 2,
			wantErr:  "meshctl: certs issue: --id is required (see 'meshctl certs issue --help')",
		},
		{
			name:     "issue without name",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/x"},
			wantCode: 2,
			wantErr:  "meshctl: certs issue: --name is required (see 'meshctl certs issue --help')",
		},
		{
			name:     "uppercase trust domain in id",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://Shop.example/x", "--name", "x"},
			wantCode: 2,
			wantErr:  `meshctl: --id "spiffe://Shop.example/x": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`,
		},
		{
			name:     "https id",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "https://shop.example/x", "--name", "x"},
			wantCode: 2,
			wantErr:  `meshctl: --id "https://shop.example/x": scheme is missing or invalid`,
		},
		{
			name:     "bad ip",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/x", "--name", "x", "--ip", "localhost"},
			wantCode: 2,
			wantErr:  `meshctl: certs issue: invalid value "localhost" for flag -ip: "localhost" is not an IP address (see 'meshctl certs issue --help')`,
		},
		{
			name:     "id in another trust domain",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://other.example/x", "--name", "x"},
			wantCode: 1,
			wantErr:  `meshctl: certs: issue spiffe://other.example/x: trust domain "other.example" does not match CA trust domain "shop.example"`,
		},
		{
			name:     "id without path",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://shop.example", "--name", "x"},
			wantCode: 1,
			wantErr:  "meshctl: certs: issue spiffe://shop.example: SPIFFE ID has no path; a workload SVID needs one, e.g. spiffe://shop.example/ns/NAMESPACE/sa/NAME",
		},
		{
			name:     "bad name",
			args:     []string{"certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/x", "--name", "../x"},
			wantCode: 1,
			wantErr:  `meshctl: certs: write SVID: invalid file name "../x": only lowercase letters, digits, '.', '_' and '-' are allowed, and it must not start with '.'`,
		},
		{
			name:     "issue without CA",
			args:     []string{"certs", "issue", "--dir", empty, "--id", "spiffe://shop.example/x", "--name", "x"},
			wantCode: 1,
			wantErr:  "meshctl: certs: load CA from " + empty + ": open " + filepath.Join(empty, "bundle.pem") + ": no such file or directory (run 'meshctl certs init --dir " + empty + "' first)",
		},
		{
			name:     "inspect without file",
			args:     []string{"certs", "inspect"},
			wantCode: 2,
			wantErr:  "meshctl: certs inspect: want exactly one FILE, got 0 arguments (see 'meshctl certs inspect --help')",
		},
		{
			name:     "inspect missing file",
			args:     []string{"certs", "inspect", filepath.Join(empty, "nope.pem")},
			wantCode: 1,
			wantErr:  "meshctl: certs: inspect: open " + filepath.Join(empty, "nope.pem") + ": no such file or directory",
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
}

func TestCertsInspect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, "certs", "init", "--dir", dir)

	// A second development directory: its SVIDs come from another CA.
	foreignDir := t.TempDir()
	mustRun(t, "certs", "init", "--dir", foreignDir)

	r := runMeshctl(t, "certs", "inspect", filepath.Join(dir, "alice.pem"))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"bundle:           " + filepath.Join(dir, "bundle.pem"),
		"spiffe id:        spiffe://shop.example/user/alice",
		"chains to bundle: yes (trust domain shop.example)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}

	// Against another CA's bundle: the report says no, and the exit code is 1.
	foreignFile := filepath.Join(foreignDir, "alice.pem")
	bundle := filepath.Join(dir, "bundle.pem")
	r = runMeshctl(t, "certs", "inspect", "--bundle", bundle, foreignFile)
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1", r.code)
	}
	if want := "chains to bundle: no: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"; !strings.Contains(r.stdout, want) {
		t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
	}
	if want := "meshctl: " + foreignFile + " does not chain to " + bundle + "\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}

	// Flags may follow the file.
	r = runMeshctl(t, "certs", "inspect", foreignFile, "--bundle", bundle)
	if r.code != 1 || !strings.Contains(r.stdout, "chains to bundle: no") {
		t.Errorf("flags after FILE: exit %d\n%s", r.code, r.stdout)
	}

	// No bundle anywhere: nothing to check.
	lone := filepath.Join(t.TempDir(), "alice.pem")
	if err := os.WriteFile(lone, readFile(t, filepath.Join(dir, "alice.pem")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "certs", "inspect", lone)
	if !strings.Contains(out, "chains to bundle: not checked (no bundle)") {
		t.Errorf("inspect without bundle:\n%s", out)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		args []string
		want string
	}{
		{"help", []string{"help"}, "meshctl manages trustmesh development certificates, authorization policies and access tokens."},
		{"--help", []string{"--help"}, "meshctl manages trustmesh development certificates, authorization policies and access tokens."},
		{"certs --help", []string{"certs", "--help"}, "meshctl certs manages the development PKI"},
		{"help certs", []string{"help", "certs"}, "meshctl certs manages the development PKI"},
		{"certs init --help", []string{"certs", "init", "--help"}, "Usage: meshctl certs init"},
		{"certs issue -h", []string{"certs", "issue", "-h"}, "Usage: meshctl certs issue"},
		{"help certs inspect", []string{"help", "certs", "inspect"}, "Usage: meshctl certs inspect"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, tc.args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 and none", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, tc.want) {
				t.Errorf("stdout does not start with %q:\n%s", tc.want, r.stdout)
			}
		})
	}
	if out := mustRun(t, "version"); out != "meshctl dev\n" {
		t.Errorf("version output = %q, want %q", out, "meshctl dev\n")
	}
	// Leaf help lists the flags.
	out := mustRun(t, "certs", "issue", "--help")
	for _, want := range []string{"-id string", "-name string", "-dns value", "-ttl duration"} {
		if !strings.Contains(out, want) {
			t.Errorf("issue --help lacks %q:\n%s", want, out)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
