package certs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
)

func TestSaveLoadCA(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	ca := newCA(t)
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"bundle.pem": 0o644, "ca-key.pem": 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	loaded, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.TrustDomain() != shop || !loaded.Certificate().Equal(ca.Certificate()) {
		t.Error("loaded CA differs from the saved one")
	}
	if !loaded.Bundle().Equal(ca.Bundle()) {
		t.Error("loaded bundle differs from the saved one")
	}
	if _, err := loaded.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/x")}); err != nil {
		t.Errorf("loaded CA cannot issue: %v", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	t.Parallel()

	missing := filepath.Join(t.TempDir(), "missing")
	_, err := certs.LoadCA(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCA(missing) error = %v, want fs.ErrNotExist", err)
	}

	// A key that belongs to another CA.
	mixed := t.TempDir()
	if err := newCA(t).Save(mixed); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := newCA(t).Save(other); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other, "ca-key.pem"), filepath.Join(mixed, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	_, err = certs.LoadCA(mixed)
	want := "certs: load CA from " + mixed + ": bundle.pem holds no certificate for the key in ca-key.pem"
	if err == nil || err.Error() != want {
		t.Errorf("LoadCA(mixed) error:\n got %v\nwant %s", err, want)
	}

	// A key file that is not PEM.
	garbled := t.TempDir()
	if err := newCA(t).Save(garbled); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbled, "ca-key.pem"), []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = certs.LoadCA(garbled)
	want = "certs: load CA from " + garbled + ": " + filepath.Join(garbled, "ca-key.pem") + `: no PEM "PRIVATE KEY" block found`
	if err == nil || err.Error() != want {
		t.Errorf("LoadCA(garbled) error:\n got %v\nwant %s", err, want)
	}
}

func TestLoadBundle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t)
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bundle.pem")

	derived, err := certs.LoadBundle(path, spiffeid.TrustDomain{})
	if err != nil {
		t.Fatal(err)
	}
	if !derived.Equal(ca.Bundle()) {
		t.Error("LoadBundle with derived trust domain differs from CA.Bundle()")
	}
	other := spiffeid.RequireTrustDomainFromString("other.example")
	explicit, err := certs.LoadBundle(path, other)
	if err != nil {
		t.Fatal(err)
	}
	if explicit.TrustDomain() != other {
		t.Errorf("TrustDomain() = %v, want other.example", explicit.TrustDomain())
	}

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = certs.LoadBundle(empty, spiffeid.TrustDomain{})
	want := "certs: load bundle " + empty + ": " + empty + ": no certificates found"
	if err == nil || err.Error() != want {
		t.Errorf("LoadBundle(empty) error:\n got %v\nwant %s", err, want)
	}
}

func TestWriteSVID(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/x")})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	certPath, keyPath, err := certs.WriteSVID(dir, "my-svc_1.v2", svid)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "my-svc_1.v2.pem") || keyPath != filepath.Join(dir, "my-svc_1.v2-key.pem") {
		t.Errorf("paths = %s, %s", certPath, keyPath)
	}

	const rule = "only lowercase letters, digits, '.', '_' and '-' are allowed, and it must not start with '.'"
	testCases := []struct {
		name string
		file string
		want string
	}{
		{"empty", "", "certs: write SVID: file name is empty"},
		{"parent dir", "../x", `certs: write SVID: invalid file name "../x": ` + rule},
		{"slash", "a/b", `certs: write SVID: invalid file name "a/b": ` + rule},
		{"backslash", `a\b`, `certs: write SVID: invalid file name "a\\b": ` + rule},
		{"uppercase", "Gateway", `certs: write SVID: invalid file name "Gateway": ` + rule},
		{"hidden", ".hidden", `certs: write SVID: invalid file name ".hidden": ` + rule},
		{"space", "a b", `certs: write SVID: invalid file name "a b": ` + rule},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := certs.WriteSVID(dir, tc.file, svid)
			if err == nil || err.Error() != tc.want {
				t.Errorf("WriteSVID(%q) error:\n got %v\nwant %s", tc.file, err, tc.want)
			}
		})
	}
}
