package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"github.com/trustmesh/trustmesh/internal/pemfile"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Report describes a certificate file as [Inspect] found it: the leaf (the
// first certificate in the file) and, if a bundle was given, whether the
// chain verifies against it under the X.509-SVID rules.
type Report struct {
	// File is the inspected file.
	File string
	// Chain is the number of certificates in the file, leaf included.
	Chain int

	// ID is the leaf's SPIFFE ID; it is zero if IDErr is set.
	ID spiffeid.ID
	// IDErr says why the leaf has no valid SPIFFE ID (no URI SAN, several,
	// or a malformed one), or is nil.
	IDErr error

	// Subject and Issuer are the leaf's distinguished names.
	Subject, Issuer string
	// Serial is the leaf's serial number in hexadecimal.
	Serial string
	// URIs, DNSNames and IPAddresses are the leaf's SANs.
	URIs        []string
	DNSNames    []string
	IPAddresses []net.IP
	// NotBefore and NotAfter bound the leaf's validity.
	NotBefore, NotAfter time.Time
	// IsCA reports the leaf's basic constraints CA flag.
	IsCA bool
	// KeyType names the leaf's public key, e.g. "ECDSA P-256".
	KeyType string
	// KeyUsage and ExtKeyUsage name the leaf's key usages, e.g.
	// "digitalSignature" and "serverAuth".
	KeyUsage, ExtKeyUsage []string

	// Checked is true if a bundle was given and the chain was verified.
	Checked bool
	// BundleTrustDomain is the trust domain of the bundle, if one was given.
	BundleTrustDomain spiffeid.TrustDomain
	// VerifyErr is nil if the chain verifies against the bundle (see
	// go-spiffe's x509svid.Verify), or says why it does not.
	VerifyErr error

	// Now is the time the report was made at, for the validity status.
	Now time.Time
}

// Inspect reads the PEM certificates in certFile and reports on the leaf
// (the first one). If bundle is not nil, it also verifies the chain against
// bundle with go-spiffe's x509svid.Verify. Only an unreadable file or one
// without certificates is an error; every finding about the certificate
// itself, verification failures included, is in the [Report].
func Inspect(certFile string, bundle *x509bundle.Bundle) (Report, error) {
	chain, err := pemfile.ReadCertificates(certFile)
	if err != nil {
		return Report{}, fmt.Errorf("certs: inspect: %w", err)
	}
	leaf := chain[0]
	r := Report{
		File:        certFile,
		Chain:       len(chain),
		Subject:     leaf.Subject.String(),
		Issuer:      leaf.Issuer.String(),
		Serial:      leaf.SerialNumber.Text(16),
		DNSNames:    leaf.DNSNames,
		IPAddresses: leaf.IPAddresses,
		NotBefore:   leaf.NotBefore,
		NotAfter:    leaf.NotAfter,
		IsCA:        leaf.IsCA,
		KeyType:     keyType(leaf),
		KeyUsage:    keyUsageNames(leaf.KeyUsage),
		ExtKeyUsage: extKeyUsageNames(leaf.ExtKeyUsage),
		Now:         time.Now(),
	}
	for _, u := range leaf.URIs {
		r.URIs = append(r.URIs, u.String())
	}
	r.ID, r.IDErr = x509svid.IDFromCert(leaf)
	if bundle != nil {
		r.Checked = true
		r.BundleTrustDomain = bundle.TrustDomain()
		_, _, r.VerifyErr = x509svid.Verify(chain, bundle, x509svid.WithTime(r.Now))
	}
	return r, nil
}

// Verified reports whether the chain was checked and verifies against the
// bundle.
func (r Report) Verified() bool { return r.Checked && r.VerifyErr == nil }

// String returns the report as a readable multi-line summary; see
// [Report.Write].
func (r Report) String() string {
	var b strings.Builder
	_ = r.Write(&b)
	return b.String()
}

// Write prints the report to w as a readable multi-line summary, one
// "label: value" line per finding, ending with the verdict:
//
//	chains to bundle: yes (trust domain example.org)
//	chains to bundle: no: x509svid: could not verify leaf certificate: ...
//	chains to bundle: not checked (no bundle)
func (r Report) Write(w io.Writer) error {
	id := r.ID.String()
	if r.IDErr != nil {
		id = "none: " + r.IDErr.Error()
	}
	ca := "no"
	if r.IsCA {
		ca = "yes"
	}
	var ips []string
	for _, ip := range r.IPAddresses {
		ips = append(ips, ip.String())
	}
	verdict := "not checked (no bundle)"
	switch {
	case r.Checked && r.VerifyErr == nil:
		verdict = fmt.Sprintf("yes (trust domain %s)", r.BundleTrustDomain.Name())
	case r.Checked:
		verdict = "no: " + r.VerifyErr.Error()
	}
	lines := [][2]string{
		{"file", r.File},
		{"spiffe id", id},
		{"subject", orNone(r.Subject)},
		{"issuer", orNone(r.Issuer)},
		{"serial", r.Serial},
		{"uri sans", list(r.URIs)},
		{"dns sans", list(r.DNSNames)},
		{"ip sans", list(ips)},
		{"not before", r.NotBefore.UTC().Format(time.RFC3339)},
		{"not after", r.NotAfter.UTC().Format(time.RFC3339) + " (" + validity(r.Now, r.NotBefore, r.NotAfter) + ")"},
		{"ca", ca},
		{"key", r.KeyType},
		{"key usage", list(r.KeyUsage)},
		{"ext key usage", list(r.ExtKeyUsage)},
		{"chain", fmt.Sprintf("%d certificate(s) in file", r.Chain)},
		{"chains to bundle", verdict},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-17s %s\n", l[0]+":", l[1]); err != nil {
			return err
		}
	}
	return nil
}

func list(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// validity describes where now falls in [notBefore, notAfter].
func validity(now, notBefore, notAfter time.Time) string {
	switch {
	case now.Before(notBefore):
		return "not yet valid, starts in " + notBefore.Sub(now).Round(time.Second).String()
	case !now.Before(notAfter):
		return "expired " + now.Sub(notAfter).Round(time.Second).String() + " ago"
	default:
		return "valid, expires in " + notAfter.Sub(now).Round(time.Second).String()
	}
}

func keyType(cert *x509.Certificate) string {
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + pub.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", pub.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return cert.PublicKeyAlgorithm.String()
	}
}

// keyUsageNames names the bits of ku as RFC 5280 spells them.
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageContentCommitment, "contentCommitment"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
		{x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"},
		{x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"},
		{x509.KeyUsageEncipherOnly, "encipherOnly"},
		{x509.KeyUsageDecipherOnly, "decipherOnly"},
	}
	var out []string
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// extKeyUsageNames names extended key usages as RFC 5280 spells them.
func extKeyUsageNames(ekus []x509.ExtKeyUsage) []string {
	var out []string
	for _, eku := range ekus {
		switch eku {
		case x509.ExtKeyUsageAny:
			out = append(out, "any")
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageCodeSigning:
			out = append(out, "codeSigning")
		case x509.ExtKeyUsageEmailProtection:
			out = append(out, "emailProtection")
		case x509.ExtKeyUsageTimeStamping:
			out = append(out, "timeStamping")
		case x509.ExtKeyUsageOCSPSigning:
			out = append(out, "OCSPSigning")
		default:
			out = append(out, fmt.Sprintf("ext key usage %d", eku))
		}
	}
	return out
}
