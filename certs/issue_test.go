package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
)

// t0 is a fixed clock for deterministic validity periods and error texts.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

var shop = spiffeid.RequireTrustDomainFromString("shop.example")

func newCA(t *testing.T, opts ...certs.CAOption) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(shop, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, certs.WithNow(t0), certs.WithValidity(48*time.Hour))
	c := ca.Certificate()

	if got, want := ca.TrustDomain(), shop; got != want {
		t.Errorf("TrustDomain() = %v, want %v", got, want)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://shop.example" {
		t.Errorf("URIs = %v, want [spiffe://shop.example]", c.URIs)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("CA certificate is not a CA")
	}
	if got, want := c.KeyUsage, x509.KeyUsageCertSign|x509.KeyUsageCRLSign; got != want {
		t.Errorf("KeyUsage = %v, want %v", got, want)
	}
	if got, want := c.NotBefore, t0.Add(-time.Minute); !got.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", got, want)
	}
	if got, want := c.NotAfter, t0.Add(48*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if b := ca.Bundle(); b.TrustDomain() != shop || !b.HasX509Authority(c) {
		t.Error("Bundle() does not hold the CA certificate for shop.example")
	}

	// The default validity is ten years.
	def := newCA(t)
	if got := def.Certificate().NotAfter.Sub(def.Certificate().NotBefore); got != certs.DefaultCAValidity+time.Minute {
		t.Errorf("default validity = %v, want %v", got, certs.DefaultCAValidity+time.Minute)
	}

	if _, err := certs.NewCA(spiffeid.TrustDomain{}); err == nil || err.Error() != "certs: new CA: trust domain is required" {
		t.Errorf("NewCA(zero) error = %v", err)
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	ca := newCA(t, certs.WithNow(t0))
	id := spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/orders")

	testCases := []struct {
		name    string
		req     certs.IssueRequest
		wantTTL time.Duration
	}{
		{
			name:    "default TTL",
			req:     certs.IssueRequest{ID: id, Now: t0},
			wantTTL: certs.DefaultSVIDTTL,
		},
		{
			name: "SANs and TTL",
			req: certs.IssueRequest{
				ID:          id,
				DNSNames:    []string{"orders", "localhost", "*.orders.svc", "my_service"},
				IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
				TTL:         time.Hour,
				Now:         t0,
			},
			wantTTL: time.Hour,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svid, err := ca.Issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if svid.ID != id {
				t.Errorf("svid.ID = %v, want %v", svid.ID, id)
			}
			if len(svid.Certificates) != 1 {
				t.Fatalf("chain length = %d, want 1", len(svid.Certificates))
			}
			gotID, _, err := x509svid.Verify(svid.Certificates, ca.Bundle(), x509svid.WithTime(t0))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if gotID != id {
				t.Errorf("verified ID = %v, want %v", gotID, id)
			}
			leaf := svid.Certificates[0]
			checkLeaf(t, leaf, tc.req.DNSNames, tc.req.IPAddresses)
			if got, want := leaf.NotBefore, t0.Add(-time.Minute); !got.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", got, want)
			}
			if got, want := leaf.NotAfter, t0.Add(tc.wantTTL); !got.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", got, want)
			}
			if _, ok := svid.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("private key is %T, want *ecdsa.PrivateKey", svid.PrivateKey)
			}
		})
	}
}

// checkLeaf checks the properties every issued SVID leaf shares.
func checkLeaf(t *testing.T, leaf *x509.Certificate, dns []string, ips []net.IP) {
	t.Helper()
	if len(leaf.URIs) != 1 {
		t.Errorf("URI SANs = %v, want exactly one", leaf.URIs)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v, want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if !slices.Equal(leaf.ExtKeyUsage, wantEKU) {
		t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, wantEKU)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", leaf.SerialNumber)
	}
	if !slices.Equal(leaf.DNSNames, dns) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, dns)
	}
	if !slices.EqualFunc(leaf.IPAddresses, ips, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, ips)
	}
}

func TestIssueRejects(t *testing.T) {
	t.Parallel()
	ca := newCA(t, certs.WithNow(t0), certs.WithValidity(48*time.Hour))
	id := spiffeid.RequireFromString("spiffe://shop.example/x")

	testCases := []struct {
		name string
		req  certs.IssueRequest
		want string
	}{
		{
			name: "zero ID",
			req:  certs.IssueRequest{Now: t0},
			want: "certs: issue: SPIFFE ID is required",
		},
		{
			name: "other trust domain",
			req:  certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://other.example/x"), Now: t0},
			want: `certs: issue spiffe://other.example/x: trust domain "other.example" does not match CA trust domain "shop.example"`,
		},
		{
			name: "no path",
			req:  certs.IssueRequest{ID: shop.ID(), Now: t0},
			want: "certs: issue spiffe://shop.example: SPIFFE ID has no path; a workload SVID needs one, e.g. spiffe://shop.example/ns/NAMESPACE/sa/NAME",
		},
		{
			name: "negative TTL",
			req:  certs.IssueRequest{ID: id, TTL: -time.Hour, Now: t0},
			want: "certs: issue spiffe://shop.example/x: TTL -1h0m0s must be positive",
		},
		{
			name: "TTL outlives CA",
			req:  certs.IssueRequest{ID: id, TTL: 72 * time.Hour, Now: t0},
			want: "certs: issue spiffe://shop.example/x: TTL 72h0m0s outlives the CA, which expires at 2030-01-03T00:00:00Z",
		},
		{
			name: "default TTL outlives CA",
			req:  certs.IssueRequest{ID: id, Now: t0.Add(36 * time.Hour)},
			want: "certs: issue spiffe://shop.example/x: TTL 24h0m0s outlives the CA, which expires at 2030-01-03T00:00:00Z",
		},
		{
			name: "CA expired",
			req:  certs.IssueRequest{ID: id, Now: t0.Add(48 * time.Hour)},
			want: "certs: issue spiffe://shop.example/x: CA expired at 2030-01-03T00:00:00Z",
		},
		{
			name: "empty DNS name",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{""}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "": name is empty`,
		},
		{
			name: "DNS name with space",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{"orders", "my host"}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "my host": label "my host" contains ' '; only letters, digits, '-' and '_' are allowed`,
		},
		{
			name: "DNS name with empty label",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{"a..b"}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "a..b": name has an empty label`,
		},
		{
			name: "DNS name with leading hyphen",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{"-orders"}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "-orders": label "-orders" starts or ends with a hyphen`,
		},
		{
			name: "DNS name with long label",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{strings.Repeat("a", 64)}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "` + strings.Repeat("a", 64) + `": label "` + strings.Repeat("a", 64) + `" is longer than 63 characters`,
		},
		{
			name: "DNS name with wildcard inside",
			req:  certs.IssueRequest{ID: id, DNSNames: []string{"a.*.b"}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid DNS name "a.*.b": label "*" contains '*'; only letters, digits, '-' and '_' are allowed`,
		},
		{
			name: "malformed IP",
			req:  certs.IssueRequest{ID: id, IPAddresses: []net.IP{{127, 0, 1}}, Now: t0},
			want: `certs: issue spiffe://shop.example/x: invalid IP address "?7f0001"`,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svid, err := ca.Issue(tc.req)
			if err == nil {
				t.Fatalf("Issue succeeded with ID %v, want error %q", svid.ID, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Issue error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	template, err := ca.Template(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/x")})
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = nil
	template.IsCA = true // Sign does not check: that is its point.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(template, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IsCA || cert.SerialNumber == nil || template.SerialNumber != nil {
		t.Errorf("Sign: IsCA = %v, serial = %v, template serial = %v; want true, set, nil", cert.IsCA, cert.SerialNumber, template.SerialNumber)
	}
	if err := cert.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if _, err := ca.Sign(nil, key.Public()); err == nil || err.Error() != "certs: sign: template is nil" {
		t.Errorf("Sign(nil) error = %v", err)
	}
}
