package certs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/trustmesh/trustmesh/internal/filewatch/filewatchtest"
	"github.com/trustmesh/trustmesh/internal/pemfile"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

// bundlePEM returns the PEM of the CA certificates of pkis, in order.
func bundlePEM(t *testing.T, pkis ...*testpki.PKI) []byte {
	t.Helper()
	var out []byte
	for _, p := range pkis {
		data, err := p.Bundle().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data...)
	}
	return out
}

// trusts reports whether the source's bundle for shop.example holds the
// CA of pki.
func trusts(t *testing.T, src x509bundle.Source, pki *testpki.PKI) bool {
	t.Helper()
	b, err := src.GetX509BundleForTrustDomain(shop)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(b.X509Authorities(), pki.CA().Certificate().Equal)
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := pemfile.WriteAtomic(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFileSourceSymlinkedBundle serves a bundle.pem that is a chain of two
// symlinks into other directories, as a secret mounted elsewhere and
// linked into place would be: a CA removed from the file the links lead to
// stops being trusted, whether the file is replaced there or a link is
// re-pointed to a new one.
func TestFileSourceSymlinkedBundle(t *testing.T) {
	t.Parallel()
	pki, retired, other := testpki.New(t, "shop.example"), testpki.New(t, "shop.example"), testpki.New(t, "shop.example")
	dir, _ := devDir(t, pki)
	root := t.TempDir()
	for _, d := range []string{"links", "v1", "v2"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "v1", "bundle.pem"), bundlePEM(t, pki, retired, other))
	if err := os.Symlink(filepath.Join(root, "v1", "bundle.pem"), filepath.Join(root, "links", "bundle.pem")); err != nil {
		t.Fatal(err)
	}
	bundleFile := filepath.Join(dir, "bundle.pem")
	if err := os.Remove(bundleFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "links", "bundle.pem"), bundleFile); err != nil {
		t.Fatal(err)
	}
	src := newFileSource(t, fileConfig(dir, nil))
	if !trusts(t, src, retired) || !trusts(t, src, other) {
		t.Fatal("the bundle does not hold the CAs of the file the links lead to")
	}

	// The CA is removed from the target, replaced in its own directory.
	writeAtomic(t, filepath.Join(root, "v1", "bundle.pem"), bundlePEM(t, pki, other))
	waitUpdated(t, src.Updated())
	if trusts(t, src, retired) || !trusts(t, src, other) {
		t.Fatal("after the target was replaced, the removed CA is still trusted (or the other one is not)")
	}

	// The second link is re-pointed to a bundle without the other CA.
	writeFile(t, filepath.Join(root, "v2", "bundle.pem"), bundlePEM(t, pki))
	filewatchtest.SymlinkAtomic(t, filepath.Join(root, "v2", "bundle.pem"), filepath.Join(root, "links", "bundle.pem"))
	waitUpdated(t, src.Updated())
	if trusts(t, src, other) || !trusts(t, src, pki) {
		t.Fatal("after the link was re-pointed, the bundle is not the new target's")
	}
}

// TestFileSourceSymlinkedSVID serves an SVID whose files are symlinks
// into another directory, where it is rotated.
func TestFileSourceSymlinkedSVID(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	store, first := devDir(t, pki)
	dir := t.TempDir()
	for _, f := range []string{"orders.pem", "orders-key.pem", "bundle.pem"} {
		if err := os.Symlink(filepath.Join(store, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	src := newFileSource(t, fileConfig(dir, nil))
	if got := serialOf(t, src); got != serial(first) {
		t.Fatalf("serial = %s, want %s", got, serial(first))
	}
	second := pki.SVID(t, ordersID)
	writeSVID(t, store, second)
	waitUpdated(t, src.Updated())
	if got := serialOf(t, src); got != serial(second) {
		t.Fatalf("after rotating the linked files: serial = %s, want %s", got, serial(second))
	}
}

// TestFileSourceSymlinkedBundleDir federates through a bundle directory
// whose entries are symlinks into another directory.
func TestFileSourceSymlinkedBundleDir(t *testing.T) {
	t.Parallel()
	pki, partnerPKI, newPartner := testpki.New(t, "shop.example"), testpki.New(t, "partner.example"), testpki.New(t, "partner.example")
	dir, _ := devDir(t, pki)
	store, federation := t.TempDir(), t.TempDir()
	writeBundle(t, partnerPKI, store, "partner.pem")
	if err := os.Symlink(filepath.Join(store, "partner.pem"), filepath.Join(federation, "partner.example.pem")); err != nil {
		t.Fatal(err)
	}
	cfg := fileConfig(dir, nil)
	cfg.BundleDir = federation
	src := newFileSource(t, cfg)

	writeAtomic(t, filepath.Join(store, "partner.pem"), bundlePEM(t, newPartner))
	waitUpdated(t, src.Updated())
	b, err := src.GetX509BundleForTrustDomain(partner)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Equal(newPartner.Bundle()) {
		t.Error("after the linked partner bundle was replaced, the source has the old one")
	}
}
