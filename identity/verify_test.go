package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
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
		// anyExtendedKeyUsage does not stand in for the role's usage ...
		{"any-extended-key-usage-as-client", pki, onlyAnyEKU, identity.Client,
			"identity: client certificate " + id + ": leaf lacks the clientAuth extended key usage"},
		{"any-extended-key-usage-as-server", pki, onlyAnyEKU, identity.Server,
			"identity: server certificate " + id + ": leaf lacks the serverAuth extended key usage"},
		// ... and neither does the absence of any extended key usage, which
		// crypto/x509 reads as "any".
		{"no-extended-key-usage-as-client", pki, noEKU, identity.Client,
			"identity: client certificate " + id + ": leaf lacks the clientAuth extended key usage"},
		{"no-extended-key-usage-as-server", pki, noEKU, identity.Server,
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

// onlyAnyEKU leaves anyExtendedKeyUsage as the leaf's only extended key
// usage.
func onlyAnyEKU(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }

// noEKU removes the extended key usage extension.
func noEKU(c *x509.Certificate) { c.ExtKeyUsage = nil }

// rawURISAN replaces the leaf's SANs with a subjectAltName extension whose
// one URI SAN is uri byte for byte: crypto/x509 would write the String() of
// a parsed url.URL, which may already normalise it.
func rawURISAN(uri string) func(*x509.Certificate) {
	return func(c *x509.Certificate) {
		name, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)})
		if err != nil {
			panic(err)
		}
		seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: name})
		if err != nil {
			panic(err)
		}
		c.URIs = nil
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: seq})
	}
}

// TestVerifyRejectsNonCanonicalURISAN: a URI SAN that crypto/x509 and
// go-spiffe normalise into a valid SPIFFE ID (spiffe://shop.example/test/leaf)
// is refused unless it is written exactly in that canonical form, for both
// roles.
func TestVerifyRejectsNonCanonicalURISAN(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	const canonical = "spiffe://shop.example" + testpki.LeafID
	testCases := []struct {
		name string
		san  string
	}{
		{"uppercase-scheme", "SPIFFE://shop.example" + testpki.LeafID},
		{"mixed-case-scheme", "Spiffe://shop.example" + testpki.LeafID},
		{"empty-fragment", canonical + "#"},
		{"uppercase-scheme-and-empty-fragment", "SPIFFE://shop.example" + testpki.LeafID + "#"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf, _ := pki.Leaf(t, rawURISAN(tc.san))
			if got := leaf.URIs[0].String(); got != canonical {
				t.Fatalf("fixture: crypto/x509 parses the SAN as %q, want it normalised to %q", got, canonical)
			}
			for _, role := range []identity.Role{identity.Client, identity.Server} {
				p, chains, err := identity.VerifyChains([]*x509.Certificate{leaf}, pki.Bundle(), role, time.Time{})
				want := fmt.Sprintf(`identity: %s certificate serial %s: URI SAN %q is not in canonical form %q`, role, leaf.SerialNumber, tc.san, canonical)
				if err == nil || err.Error() != want {
					t.Errorf("VerifyChains as %s: error\n got: %v\nwant: %s", role, err, want)
				}
				if !p.IsZero() || chains != nil {
					t.Errorf("VerifyChains as %s on error = %v, %v; want the zero Principal and no chains", role, p, chains)
				}
			}
		})
	}

	// The same extension with the canonical SAN verifies: what is refused
	// above is the spelling, not the way the fixture is built.
	leaf, _ := pki.Leaf(t, rawURISAN(canonical))
	for _, role := range []identity.Role{identity.Client, identity.Server} {
		p, err := identity.Verify([]*x509.Certificate{leaf}, pki.Bundle(), role, time.Time{})
		if err != nil || p.ID.String() != canonical {
			t.Errorf("canonical raw SAN as %s: %v, %v", role, p, err)
		}
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

// TestVerifyChains: VerifyChains returns the chains it verified, from the
// leaf to a root of the bundle, not the certificates the peer presented;
// Verify is the same check without them.
func TestVerifyChains(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("shop.example")
	root, err := certs.NewCA(td, certs.WithMaxPathLen(1))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	const ordersID = "spiffe://shop.example/ns/shop/sa/orders"
	issue := func(ca *certs.CA) []*x509.Certificate {
		svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(ordersID)})
		if err != nil {
			t.Fatal(err)
		}
		return svid.Certificates
	}
	direct, viaIntermediate := issue(root), issue(inter)
	// A stray certificate after the chain is presented but verifies nothing.
	stray := testpki.New(t, "shop.example").SVID(t, "spiffe://shop.example/stray").Certificates[0]
	testCases := []struct {
		name      string
		presented []*x509.Certificate
		want      []*x509.Certificate
	}{
		{"leaf-signed-by-the-root", direct, []*x509.Certificate{direct[0], root.Certificate()}},
		{"leaf-and-intermediate", viaIntermediate, []*x509.Certificate{viaIntermediate[0], inter.Certificate(), root.Certificate()}},
		{"leaf-intermediate-and-a-stray", append(slices.Clone(viaIntermediate), stray), []*x509.Certificate{viaIntermediate[0], inter.Certificate(), root.Certificate()}},
	}
	for _, tc := range testCases {
		for _, role := range []identity.Role{identity.Client, identity.Server} {
			p, chains, err := identity.VerifyChains(tc.presented, root.Bundle(), role, time.Time{})
			if err != nil {
				t.Fatalf("%s as %s: %v", tc.name, role, err)
			}
			if p.ID.String() != ordersID || p.Leaf != tc.presented[0] {
				t.Errorf("%s as %s: Principal = %v (leaf %p), want %s (leaf %p)", tc.name, role, p, p.Leaf, ordersID, tc.presented[0])
			}
			if len(chains) != 1 || !slices.EqualFunc(chains[0], tc.want, (*x509.Certificate).Equal) {
				t.Errorf("%s as %s: chains = %v, want [%v]", tc.name, role, subjects(chains...), subjects(tc.want))
			}
			if vp, err := identity.Verify(tc.presented, root.Bundle(), role, time.Time{}); err != nil || vp != p {
				t.Errorf("%s as %s: Verify = %v, %v; want %v as VerifyChains", tc.name, role, vp, err, p)
			}
		}
	}
}

// TestVerifyChainsIntermediateKeyUsage: an intermediate CA whose extended
// key usages are only serverAuth may vouch for servers, not for clients,
// whatever usages the leaf claims (crypto/x509's rule for chains, which
// go-spiffe's x509svid.Verify does not apply).
func TestVerifyChainsIntermediateKeyUsage(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("shop.example")
	root, err := certs.NewCA(td, certs.WithMaxPathLen(1))
	if err != nil {
		t.Fatal(err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	inter, err := root.Sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "servers-only intermediate"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		URIs:                  []*url.URL{td.ID().URL()},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, interKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	const ordersID = "spiffe://shop.example/ns/shop/sa/orders"
	tmpl, err := root.Template(certs.IssueRequest{ID: spiffeid.RequireFromString(ordersID)})
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, leafKey.Public(), interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf, inter}

	if _, chains, err := identity.VerifyChains(chain, root.Bundle(), identity.Server, time.Time{}); err != nil || len(chains) != 1 {
		t.Errorf("as server: %d chains, %v; want one", len(chains), err)
	}
	p, chains, err := identity.VerifyChains(chain, root.Bundle(), identity.Client, time.Time{})
	want := fmt.Sprintf(`identity: client certificate %q: CA certificate "CN=servers-only intermediate" (serial %s) of its chain does not permit the clientAuth extended key usage`, ordersID, inter.SerialNumber)
	if err == nil || err.Error() != want {
		t.Errorf("as client: error\n got: %v\nwant: %s", err, want)
	}
	if !p.IsZero() || chains != nil {
		t.Errorf("as client on error = %v, %v; want the zero Principal and no chains", p, chains)
	}
}

func subjects(chains ...[]*x509.Certificate) [][]string {
	out := make([][]string, 0, len(chains))
	for _, c := range chains {
		names := make([]string, 0, len(c))
		for _, cert := range c {
			names = append(names, cert.Subject.String())
		}
		out = append(out, names)
	}
	return out
}

// TestVerifyConnectionOverTLS: in a real TLS 1.3 handshake on loopback,
// with VerifyChains in tls.Config.VerifyConnection as the mesh wires it, a
// client certificate whose URI SAN is "SPIFFE://..." is refused on the
// leaf as crypto/tls parsed it, and a good SVID passes.
func TestVerifyConnectionOverTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	serverSVID := pki.SVID(t, "spiffe://shop.example/ns/shop/sa/gateway")
	good := pki.SVID(t, "spiffe://shop.example/user/alice")
	badLeaf, badKey := pki.Leaf(t, rawURISAN("SPIFFE://shop.example"+testpki.LeafID))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	verify := func(role identity.Role, got chan<- error) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			_, _, err := identity.VerifyChains(cs.PeerCertificates, pki.Bundle(), role, time.Time{})
			if got != nil {
				got <- err
			}
			return err
		}
	}
	serverErr := make(chan error, 1)
	serverConfig := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{tlsCert(serverSVID.Certificates, serverSVID.PrivateKey)},
		ClientAuth:       tls.RequireAnyClientCert, // VerifyConnection does the verifying
		VerifyConnection: verify(identity.Client, serverErr),
	}
	handshake := func(cert tls.Certificate) error {
		accepted := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			defer conn.Close()
			accepted <- tls.Server(conn, serverConfig).Handshake()
		}()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       []tls.Certificate{cert},
			InsecureSkipVerify: true, // VerifyConnection verifies the server's SVID
			VerifyConnection:   verify(identity.Server, nil),
		})
		if err == nil {
			// In TLS 1.3 the client learns of a refused certificate on its
			// first read.
			_, err = conn.Read(make([]byte, 1))
			_ = conn.Close()
		}
		aerr := <-accepted
		if aerr == nil && err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("client error %v with a server that accepted it", err)
		}
		select {
		case verr := <-serverErr:
			return verr
		default: // the handshake ended before the server saw a certificate
			t.Fatalf("server handshake ended without verifying the client: %v (client: %v)", aerr, err)
			return nil
		}
	}

	if err := handshake(tlsCert(good.Certificates, good.PrivateKey)); err != nil {
		t.Errorf("good SVID refused: %v", err)
	}
	want := fmt.Sprintf(`identity: client certificate serial %s: URI SAN "SPIFFE://shop.example/test/leaf" is not in canonical form "spiffe://shop.example/test/leaf"`, badLeaf.SerialNumber)
	if err := handshake(tlsCert([]*x509.Certificate{badLeaf}, badKey)); err == nil || err.Error() != want {
		t.Errorf("non-canonical SAN: server error\n got: %v\nwant: %s", err, want)
	}
}

func tlsCert(chain []*x509.Certificate, key crypto.Signer) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}
