package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
)

// PKI is a development CA for one trust domain, for tests.
type PKI struct {
	ca *certs.CA
}

// New returns a PKI with a fresh CA for the trust domain td (a name such as
// "shop.example" or an ID such as "spiffe://shop.example").
func New(t testing.TB, td string) *PKI {
	t.Helper()
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		t.Fatalf("testpki: trust domain %q: %v", td, err)
	}
	ca, err := certs.NewCA(trustDomain)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return &PKI{ca: ca}
}

// CA returns the underlying CA.
func (p *PKI) CA() *certs.CA { return p.ca }

// TrustDomain returns the CA's trust domain.
func (p *PKI) TrustDomain() spiffeid.TrustDomain { return p.ca.TrustDomain() }

// Bundle returns the CA's trust bundle. It satisfies x509bundle.Source.
func (p *PKI) Bundle() *x509bundle.Bundle { return p.ca.Bundle() }

// SVIDOption adjusts the request behind [PKI.SVID].
type SVIDOption interface {
	applyToRequest(*certs.IssueRequest)
}

type svidOptionFunc func(*certs.IssueRequest)

func (f svidOptionFunc) applyToRequest(r *certs.IssueRequest) { f(r) }

// WithDNSNames adds DNS SANs. By default, an SVID has none.
func WithDNSNames(names ...string) SVIDOption {
	return svidOptionFunc(func(r *certs.IssueRequest) { r.DNSNames = append(r.DNSNames, names...) })
}

// WithIPAddresses adds IP SANs. By default, an SVID has none.
func WithIPAddresses(ips ...net.IP) SVIDOption {
	return svidOptionFunc(func(r *certs.IssueRequest) { r.IPAddresses = append(r.IPAddresses, ips...) })
}

// WithTTL sets the SVID's lifetime. By default, it is certs.DefaultSVIDTTL.
func WithTTL(ttl time.Duration) SVIDOption {
	return svidOptionFunc(func(r *certs.IssueRequest) { r.TTL = ttl })
}

// WithNow sets the issuance time. By default, it is time.Now().
func WithNow(now time.Time) SVIDOption {
	return svidOptionFunc(func(r *certs.IssueRequest) { r.Now = now })
}

// SVID issues a good X.509-SVID for id with [certs.CA.Issue].
func (p *PKI) SVID(t testing.TB, id string, opts ...SVIDOption) *x509svid.SVID {
	t.Helper()
	spiffeID, err := spiffeid.FromString(id)
	if err != nil {
		t.Fatalf("testpki: SPIFFE ID %q: %v", id, err)
	}
	req := certs.IssueRequest{ID: spiffeID}
	for _, opt := range opts {
		opt.applyToRequest(&req)
	}
	svid, err := p.ca.Issue(req)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return svid
}

// LeafID is the SPIFFE ID path of the template [PKI.Leaf] starts from:
// the leaf's ID is spiffe://TD/test/leaf.
const LeafID = "/test/leaf"

// Leaf signs a leaf certificate with the CA after letting mutate change a
// good SVID template (ID spiffe://TD/test/leaf, see [LeafID]; valid from a
// minute ago for 24 hours; digitalSignature; serverAuth and clientAuth; not
// a CA). It returns the certificate and its fresh ECDSA P-256 key. mutate
// may be nil, and the defects below are ready-made mutators. The template
// is signed as is, without any of the checks of certs.CA.Issue.
func (p *PKI) Leaf(t testing.TB, mutate func(*x509.Certificate)) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	id, err := spiffeid.FromPath(p.TrustDomain(), LeafID)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	template, err := p.ca.Template(certs.IssueRequest{ID: id})
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	if mutate != nil {
		mutate(template)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: generate key: %v", err)
	}
	cert, err := p.ca.Sign(template, key.Public())
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return cert, key
}

// WriteDir writes a development directory into a new t.TempDir() with
// certs.Init, using this PKI's CA (so [PKI.Bundle] verifies every SVID in
// it): the bundle, the CA and an SVID for each of identities (at least
// one), which must be in the PKI's trust domain. It returns the directory.
func (p *PKI) WriteDir(t testing.TB, identities []certs.Identity) string {
	t.Helper()
	if len(identities) == 0 {
		t.Fatalf("testpki: WriteDir needs at least one identity")
	}
	dir := t.TempDir()
	if err := p.ca.Save(dir); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	res, err := certs.Init(dir, certs.InitOptions{TrustDomain: p.TrustDomain(), Identities: identities})
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	if res.CACreated {
		t.Fatalf("testpki: certs.Init replaced the CA in %s", dir)
	}
	return dir
}
