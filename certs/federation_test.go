package certs_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

var partner = spiffeid.RequireTrustDomainFromString("partner.example")

// writeBundle writes pki's bundle to dir/NAME.
func writeBundle(t *testing.T, pki *testpki.PKI, dir, name string) {
	t.Helper()
	data, err := pki.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), data)
}

func TestLoadBundleSetFederation(t *testing.T) {
	t.Parallel()
	shopPKI := testpki.New(t, "shop.example")
	partnerPKI := testpki.New(t, "partner.example")
	caller := partnerPKI.SVID(t, "spiffe://partner.example/ns/billing/sa/api")

	dir := t.TempDir()
	writeBundle(t, shopPKI, dir, "shop.example.pem")
	// Entries a bundle directory may hold besides bundles: temporary files
	// of atomic writes, Kubernetes' ..data link, subdirectories.
	writeFile(t, filepath.Join(dir, ".partner.example.pem.tmp-123"), []byte("half"))
	if err := os.Mkdir(filepath.Join(dir, "..2026_01_01"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "archive"), 0o755); err != nil {
		t.Fatal(err)
	}

	set, err := certs.LoadBundleSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 || !set.Has(shop) {
		t.Fatalf("set has %d bundles, want only shop.example", set.Len())
	}
	_, err = identity.Verify(caller.Certificates, set, identity.Client, time.Time{})
	want := `identity: client certificate "spiffe://partner.example/ns/billing/sa/api": x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain "partner.example"`
	if err == nil || err.Error() != want {
		t.Errorf("without partner.example.pem:\n got %v\nwant %s", err, want)
	}

	writeBundle(t, partnerPKI, dir, "partner.example.pem")
	if set, err = certs.LoadBundleSet(dir); err != nil {
		t.Fatal(err)
	}
	p, err := identity.Verify(caller.Certificates, set, identity.Client, time.Time{})
	if err != nil {
		t.Fatalf("with partner.example.pem: %v", err)
	}
	if p.ID.TrustDomain() != partner {
		t.Errorf("principal = %v", p)
	}
	// The partner's bundle vouches only for its own trust domain.
	if _, err := identity.Verify(shopPKI.SVID(t, ordersID).Certificates, set, identity.Client, time.Time{}); err != nil {
		t.Errorf("shop.example caller: %v", err)
	}
	// A partner-signed certificate claiming a shop.example ID is checked
	// against shop.example's bundle, and refused.
	impostor, _ := partnerPKI.Leaf(t, func(c *x509.Certificate) {
		c.URIs = []*url.URL{spiffeid.RequireFromString(ordersID).URL()}
	})
	if _, err := identity.Verify([]*x509.Certificate{impostor}, set, identity.Client, time.Time{}); err == nil ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("partner-signed shop.example certificate: %v", err)
	}
}

func TestLoadBundleSetErrors(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	testCases := []struct {
		name string
		file string
		data []byte // nil: pki's bundle
		want string // after "certs: load bundle set DIR: "
	}{
		{name: "not-pem", file: "shop.example.crt", want: "shop.example.crt: want TRUST_DOMAIN.pem files only"},
		{name: "bad-trust-domain", file: "Shop.example.pem", want: `Shop.example.pem: file name is not TRUST_DOMAIN.pem: "Shop.example" is not a trust domain name`},
		{name: "empty", file: "shop.example.pem", data: []byte{}, want: "shop.example.pem: no certificates found"},
		{name: "garbage", file: "shop.example.pem", data: []byte("not pem"), want: "shop.example.pem: x509bundle: cannot parse certificate: no PEM blocks found"},
		{name: "wrong-trust-domain", file: "partner.example.pem", want: `partner.example.pem: certificate 1 is for trust domain "shop.example"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.data == nil {
				writeBundle(t, pki, dir, tc.file)
			} else {
				writeFile(t, filepath.Join(dir, tc.file), tc.data)
			}
			_, err := certs.LoadBundleSet(dir)
			if want := fmt.Sprintf("certs: load bundle set %s: %s", dir, tc.want); err == nil || err.Error() != want {
				t.Errorf("error:\n got %v\nwant %s", err, want)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := certs.LoadBundleSet(missing); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing dir: %v", err)
	}
}

// TestFileSourceBundleDir adds a federated trust domain to a running
// source by dropping its bundle into the watched directory.
func TestFileSourceBundleDir(t *testing.T) {
	t.Parallel()
	shopPKI := testpki.New(t, "shop.example")
	partnerPKI := testpki.New(t, "partner.example")
	dir, _ := devDir(t, shopPKI)
	federation := filepath.Join(dir, "federation")
	if err := os.Mkdir(federation, 0o755); err != nil {
		t.Fatal(err)
	}
	caller := partnerPKI.SVID(t, "spiffe://partner.example/ns/billing/sa/api")

	cfg := fileConfig(dir, nil)
	cfg.BundleDir = federation
	src := newFileSource(t, cfg)
	if _, err := identity.Verify(caller.Certificates, src, identity.Client, time.Time{}); err == nil {
		t.Fatal("partner.example caller verified before its bundle was configured")
	}

	writeBundle(t, partnerPKI, federation, "partner.example.pem")
	waitUpdated(t, src.Updated())
	if _, err := identity.Verify(caller.Certificates, src, identity.Client, time.Time{}); err != nil {
		t.Fatalf("after adding partner.example.pem: %v", err)
	}

	// The directory alone, holding the own trust domain too.
	only := t.TempDir()
	writeBundle(t, shopPKI, only, "shop.example.pem")
	writeBundle(t, partnerPKI, only, "partner.example.pem")
	cfg.BundleFile, cfg.BundleDir = "", only
	src2 := newFileSource(t, cfg)
	if _, err := identity.Verify(caller.Certificates, src2, identity.Client, time.Time{}); err != nil {
		t.Errorf("BundleDir alone: %v", err)
	}

	// The same trust domain from both places is ambiguous.
	cfg.BundleFile = filepath.Join(dir, "bundle.pem")
	_, err := certs.NewFileSource(context.Background(), cfg)
	want := fmt.Sprintf("certs: bundle dir %s: shop.example.pem repeats the trust domain of bundle %s", only, cfg.BundleFile)
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}
