package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// serialOf reads the serial number of dir/NAME.pem's leaf, in hexadecimal.
func serialOf(t *testing.T, dir, name string) string {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

func TestCertsRotate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, "certs", "init", "--dir", dir, "--dns", "orders.internal")
	before := map[string]string{}
	for _, name := range []string{"gateway", "orders", "inventory", "payments", "admin", "alice"} {
		before[name] = serialOf(t, dir, name)
	}

	out := mustRun(t, "certs", "rotate", "--dir", dir, "--ttl", "2h")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 12 {
		t.Fatalf("rotate printed %d lines, want 3 per workload:\n%s", len(lines), out)
	}
	for i, name := range []string{"gateway", "orders", "inventory", "payments"} {
		serial := serialOf(t, dir, name)
		if serial == before[name] {
			t.Errorf("%s: serial unchanged", name)
		}
		want := fmt.Sprintf("rotated spiffe://shop.example/ns/shop/sa/%s (serial %s, expires ", name, serial)
		if !strings.HasPrefix(lines[3*i], want) {
			t.Errorf("line %d = %q, want prefix %q", 3*i, lines[3*i], want)
		}
		if lines[3*i+1] != "  wrote "+filepath.Join(dir, name+".pem") || lines[3*i+2] != "  wrote "+filepath.Join(dir, name+"-key.pem") {
			t.Errorf("lines %d-%d = %q", 3*i+1, 3*i+2, lines[3*i+1:3*i+3])
		}
	}
	for _, name := range []string{"admin", "alice"} {
		if serialOf(t, dir, name) != before[name] {
			t.Errorf("%s rotated without being named", name)
		}
	}
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "orders.pem"))
	for _, want := range []string{"dns sans:         orders, localhost, orders.internal", "chains to bundle: yes (trust domain shop.example)"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect after rotate lacks %q:\n%s", want, out)
		}
	}

	// Named SVIDs only, flags after the names.
	out = mustRun(t, "certs", "rotate", "alice", "admin", "--dir", dir)
	if !strings.HasPrefix(out, "rotated spiffe://shop.example/user/alice (serial ") ||
		!strings.Contains(out, "rotated spiffe://shop.example/ns/ops/sa/admin (serial ") {
		t.Errorf("rotate alice admin:\n%s", out)
	}
	if serialOf(t, dir, "alice") == before["alice"] {
		t.Error("alice not rotated")
	}
}

func TestCertsRotateErrors(t *testing.T) {
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
			name:     "unknown-name",
			args:     []string{"certs", "rotate", "--dir", dir, "bob"},
			wantCode: 1,
			wantErr: "meshctl: certs: rotate bob: open " + filepath.Join(dir, "bob.pem") +
				": no such file or directory (run 'meshctl certs init --dir " + dir + "' first, or 'meshctl certs issue --dir " + dir + "' for a new name)\n",
		},
		{
			name:     "no-ca",
			args:     []string{"certs", "rotate", "--dir", empty},
			wantCode: 1,
			wantErr: "meshctl: certs: load CA from " + empty + ": open " + filepath.Join(empty, "bundle.pem") +
				": no such file or directory (run 'meshctl certs init --dir " + empty + "' first, or 'meshctl certs issue --dir " + empty + "' for a new name)\n",
		},
		{
			name:     "file-name",
			args:     []string{"certs", "rotate", "--dir", dir, "orders.pem"},
			wantCode: 2,
			wantErr:  "meshctl: certs rotate: NAME \"orders.pem\": give the name without .pem, e.g. \"orders\" (see 'meshctl certs rotate --help')\n",
		},
		{
			name:     "bad-name",
			args:     []string{"certs", "rotate", "--dir", dir, "Orders"},
			wantCode: 1,
			wantErr:  "meshctl: certs: rotate: invalid file name \"Orders\": only lowercase letters, digits, '.', '_' and '-' are allowed, and it must not start with '.'\n",
		},
		{
			name:     "bad-ttl",
			args:     []string{"certs", "rotate", "--dir", dir, "--ttl", "0s"},
			wantCode: 2,
			wantErr:  "meshctl: --ttl 0s: must be positive\n",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, tc.args...)
			if r.code != tc.wantCode || r.stderr != tc.wantErr {
				t.Errorf("exit %d, stderr:\n %q\nwant exit %d, stderr:\n %q", r.code, r.stderr, tc.wantCode, tc.wantErr)
			}
		})
	}
}

func TestCertsInitIntermediate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := mustRun(t, "certs", "init", "--dir", dir, "--intermediate")
	for _, want := range []string{
		"created CA spiffe://shop.example in " + dir,
		"created intermediate CA in " + dir,
		"wrote " + filepath.Join(dir, "intermediate-key.pem"),
		"wrote " + filepath.Join(dir, "intermediate.pem"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("init --intermediate output lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "certs", "inspect", filepath.Join(dir, "orders.pem"))
	for _, want := range []string{
		"issuer:           CN=trustmesh development intermediate CA shop.example,O=trustmesh development",
		"chain:            2 certificate(s) in file",
		"chains to bundle: yes (trust domain shop.example)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	// issue and rotate use the intermediate.
	mustRun(t, "certs", "issue", "--dir", dir, "--id", "spiffe://shop.example/user/bob", "--name", "bob")
	mustRun(t, "certs", "rotate", "--dir", dir, "orders")
	for _, name := range []string{"bob", "orders"} {
		out = mustRun(t, "certs", "inspect", filepath.Join(dir, name+".pem"))
		if !strings.Contains(out, "chain:            2 certificate(s) in file") || !strings.Contains(out, "chains to bundle: yes") {
			t.Errorf("%s.pem after issue/rotate:\n%s", name, out)
		}
	}

	// Kept on a second run, with or without the flag.
	out = mustRun(t, "certs", "init", "--dir", dir)
	if !strings.Contains(out, "kept existing intermediate CA in "+dir) {
		t.Errorf("second init output:\n%s", out)
	}

	// A root made without --intermediate cannot take one.
	plain := t.TempDir()
	mustRun(t, "certs", "init", "--dir", plain)
	r := runMeshctl(t, "certs", "init", "--dir", plain, "--intermediate")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "meshctl: certs: init "+plain+": the existing CA was created without room for an intermediate (set Force to replace it)") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	out = mustRun(t, "certs", "init", "--dir", plain, "--intermediate", "--force")
	if !strings.Contains(out, "created intermediate CA in "+plain) {
		t.Errorf("init --intermediate --force:\n%s", out)
	}
}
