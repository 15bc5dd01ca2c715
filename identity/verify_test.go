package identity_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

func TestVerifyRejectsBadPeerCertificates(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	other := testpki.New(t, "shop.example") // same trust domain, different CA
	const id = `"spiffe://shop.example/test/leaf"`

	testCases := []struct {
		name    string
		pki     *testpki.PKI
		mutate  func(*x509.Certificate)
		role    identity.Role
		wantErr string
	}{
		{"no-uri-san", pki, testpki.NoURISAN, identity.Client,
			"identity: client certificate serial %s: x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN"},
		{"two-uri-sans", pki, testpki.TwoURISANs, identity.Client,
			"identity: client certificate serial %s: x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN"},
		{"https-uri", pki, testpki.HTTPSURI, identity.Client,
			"identity: client certificate serial %s: x509svid: could not get leaf SPIFFE ID: scheme is missing or invalid"},
		{"empty-path", pki, testpki.NoPath, identity.Client,
			`identity: client certificate "spiffe://shop.example": SPIFFE ID of an X.509-SVID must have a path`},
		{"uppercase-trust-domain", pki, testpki.UppercaseTrustDomain, identity.Client,
			"identity: client certificate serial %s: x509svid: could not get leaf SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
		{"leaf-is-ca", pki, testpki.LeafIsCA, identity.Client,
			"identity: client certificate " + id + ": x509svid: leaf certificate with CA flag set to true"},
		{"expired", pki, testpki.Expired, identity.Client,
			"identity: client certificate " + id + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid:"},
		{"not-yet-valid", pki, testpki.NotYetValid, identity.Client,
			"identity: client certificate " + id + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid:"},
		{"other-ca", other, nil, identity.Client,
			"identity: client certificate " + id + ": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"},
		{"no-digital-signature", pki, testpki.NoDigitalSignature, identity.Client,
			"identity: client certificate " + id + ": leaf lacks the digitalSignature key usage"},
		{"no-client-auth", pki, testpki.NoClientAuth, identity.Client,
			"identity: client certificate " + id + ": leaf lacks the clientAuth extended key usage"},
		{"no-server-auth", pki, testpki.NoServerAuth, identity.Server,
			"identity: server certificate " + id + ": leaf lacks the serverAuth extended key usage"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf, _ := tc.pki.Leaf(t, tc.mutate)
			p, err := identity.Verify([]*x509.Certificate{leaf}, pki.Bundle(), tc.role, time.Time{})
			if err == nil {
				t.Fatalf("Verify accepted %s as %s", tc.name, p.ID)
			}
			want := strings.Replace(tc.wantErr, "%s", leaf.SerialNumber.String(), 1)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error:\n got: %s\nwant: %s", err, want)
			}
			if !p.IsZero() {
				t.Errorf("Principal on error = %v, want zero", p)
			}
		})
	}
}

func TestVerifyAcceptsSVID(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	svid := pki.SVID(t, "spiffe://shop.example/ns/shop/sa/orders")
	for _, role := range []identity.Role{identity.Client, identity.Server} {
		p, err := identity.Verify(svid.Certificates, pki.Bundle(), role, time.Time{})
		if err != nil {
			t.Fatalf("Verify as %s: %v", role, err)
		}
		if got, want := p.ID.String(), "spiffe://shop.example/ns/shop/sa/orders"; got != want {
			t.Errorf("ID = %s, want %s", got, want)
		}
		if p.Leaf != svid.Certificates[0] {
			t.Errorf("Leaf is not the presented leaf")
		}
	}
}

func TestVerifyFailsClosedOnMissingInput(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	if _, err := identity.Verify(nil, pki.Bundle(), identity.Client, time.Time{}); err == nil || err.Error() != "identity: peer presented no certificate" {
		t.Errorf("no chain: err = %v", err)
	}
	svid := pki.SVID(t, "spiffe://shop.example/x")
	if _, err := identity.Verify(svid.Certificates, pki.Bundle(), 0, time.Time{}); err == nil || err.Error() != "identity: role must be Client or Server" {
		t.Errorf("no role: err = %v", err)
	}
	// A federated trust domain without a configured bundle is refused.
	partner := testpki.New(t, "partner.example")
	psvid := partner.SVID(t, "spiffe://partner.example/x")
	_, err := identity.Verify(psvid.Certificates, pki.Bundle(), identity.Client, time.Time{})
	if want := `identity: client certificate "spiffe://partner.example/x": x509svid: could not get X509 bundle: x509bundle: no X.509 bundle found for trust domain: "partner.example"`; err == nil || err.Error() != want {
		t.Errorf("unknown trust domain:\n got: %v\nwant: %s", err, want)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	// Only the mesh's interceptors can put a Principal in a context (there
	// is no NewContext); that path is tested end to end in the mesh package.
	if _, ok := identity.FromContext(context.Background()); ok {
		t.Fatal("FromContext found a Principal in an empty context")
	}
}
