package testpki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"time"
)

// The functions below are mutators for [PKI.Leaf], each named by the defect
// it introduces into an otherwise good X.509-SVID. [Defects] lists them for
// table tests.

// NoURISAN removes the SPIFFE ID: the leaf has no URI SAN.
func NoURISAN(c *x509.Certificate) { c.URIs = nil }

// TwoURISANs adds a second SPIFFE ID URI SAN (spiffe://TD/test/other).
func TwoURISANs(c *x509.Certificate) {
	other := *c.URIs[0]
	other.Path = "/test/other"
	c.URIs = append(c.URIs, &other)
}

// HTTPSURI turns the SPIFFE ID into an https URI with the same host and
// path.
func HTTPSURI(c *x509.Certificate) { replaceURI(c, func(u *url.URL) { u.Scheme = "https" }) }

// UppercaseTrustDomain uppercases the first letter of the trust domain in
// the URI SAN (spiffe://Shop.example/test/leaf).
func UppercaseTrustDomain(c *x509.Certificate) {
	replaceURI(c, func(u *url.URL) {
		if u.Host != "" && u.Host[0] >= 'a' && u.Host[0] <= 'z' {
			u.Host = string(u.Host[0]-'a'+'A') + u.Host[1:]
		}
	})
}

// NoPath strips the path from the SPIFFE ID, leaving the trust domain's
// own ID (spiffe://TD), which no workload may hold.
func NoPath(c *x509.Certificate) { replaceURI(c, func(u *url.URL) { u.Path = "" }) }

// LeafIsCA sets the CA flag on the leaf.
func LeafIsCA(c *x509.Certificate) {
	c.BasicConstraintsValid = true
	c.IsCA = true
}

// NoDigitalSignature replaces the digitalSignature key usage with
// keyEncipherment.
func NoDigitalSignature(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }

// Expired makes the leaf valid from two hours ago until one hour ago.
func Expired(c *x509.Certificate) {
	now := time.Now()
	c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
}

// NotYetValid makes the leaf valid from one hour from now, for an hour.
func NotYetValid(c *x509.Certificate) {
	now := time.Now()
	c.NotBefore, c.NotAfter = now.Add(time.Hour), now.Add(2*time.Hour)
}

// NoClientAuth leaves only the serverAuth extended key usage.
func NoClientAuth(c *x509.Certificate) {
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
}

// NoServerAuth leaves only the clientAuth extended key usage.
func NoServerAuth(c *x509.Certificate) {
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
}

// UppercaseScheme writes the URI SAN with an uppercase scheme
// (SPIFFE://TD/test/leaf), raw in the subjectAltName extension: URL parsers,
// crypto/x509's and go-spiffe's, normalise it to the canonical spiffe://.
func UppercaseScheme(c *x509.Certificate) {
	u := *c.URIs[0]
	rawURISAN(c, "SPIFFE://"+u.Host+u.Path)
}

// OnlyAnyExtKeyUsage leaves anyExtendedKeyUsage as the only extended key
// usage, instead of naming clientAuth and serverAuth.
func OnlyAnyExtKeyUsage(c *x509.Certificate) {
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
}

// rawURISAN replaces the URI SANs of c with one, uri, written byte for byte
// into the subjectAltName extension.
func rawURISAN(c *x509.Certificate, uri string) {
	name, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)})
	if err != nil {
		panic(err) // a fixed, valid structure: cannot fail
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: name})
	if err != nil {
		panic(err)
	}
	c.URIs = nil
	c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: seq})
}

// Defect is a named mutator for [PKI.Leaf].
type Defect struct {
	// Name names the defect in fixture style, e.g. "leaf-is-ca".
	Name string
	// Mutate introduces the defect into a certificate template.
	Mutate func(*x509.Certificate)
}

// Defects returns every defect of this package, in a fixed order.
func Defects() []Defect {
	return []Defect{
		{"no-uri-san", NoURISAN},
		{"two-uri-sans", TwoURISANs},
		{"https-uri", HTTPSURI},
		{"uppercase-trust-domain", UppercaseTrustDomain},
		{"no-path", NoPath},
		{"leaf-is-ca", LeafIsCA},
		{"no-digital-signature", NoDigitalSignature},
		{"expired", Expired},
		{"not-yet-valid", NotYetValid},
		{"no-client-auth", NoClientAuth},
		{"no-server-auth", NoServerAuth},
		{"uppercase-scheme", UppercaseScheme},
		{"only-any-ext-key-usage", OnlyAnyExtKeyUsage},
	}
}

// replaceURI applies edit to a copy of the first URI SAN and makes that copy
// the only URI SAN.
func replaceURI(c *x509.Certificate, edit func(*url.URL)) {
	u := *c.URIs[0]
	edit(&u)
	c.URIs = []*url.URL{&u}
}
