package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultSVIDTTL is the lifetime of an SVID when [IssueRequest.TTL] is zero.
const DefaultSVIDTTL = 24 * time.Hour

// IssueRequest describes an X.509-SVID for [CA.Issue].
type IssueRequest struct {
	// ID is the SPIFFE ID of the SVID, the certificate's only URI SAN. It is
	// required, must be in the CA's trust domain and must have a path.
	ID spiffeid.ID

	// DNSNames are extra DNS SANs, for clients that check host names as well
	// as SPIFFE IDs (grpcurl, browsers). By default, there are none. Each
	// must be a valid host name; a leading "*." wildcard label is allowed.
	DNSNames []string

	// IPAddresses are extra IP SANs. By default, there are none.
	IPAddresses []net.IP

	// TTL is how long the SVID is valid, counted from Now. By default, it is
	// [DefaultSVIDTTL]. It must not be negative and must not outlive the CA.
	TTL time.Duration

	// Now is the issuance time. By default (the zero time), it is time.Now().
	// NotBefore is set one minute earlier to tolerate clock skew.
	Now time.Time
}

// Issue issues an X.509-SVID for req with a fresh ECDSA P-256 key. The leaf
// has exactly one URI SAN (req.ID), is not a CA, has the digitalSignature
// key usage and both the serverAuth and clientAuth extended key usages, so
// the same SVID serves both sides of a mutual TLS connection. The returned
// SVID's chain is the leaf followed by [CA.Chain] (just the leaf for a root
// CA, leaf then intermediate for an intermediate): peers verify it against
// [CA.Bundle], which holds only the root.
func (ca *CA) Issue(req IssueRequest) (*x509svid.SVID, error) {
	template, err := ca.Template(req)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: issue %s: generate key: %w", req.ID, err)
	}
	cert, err := ca.sign(template, key.Public())
	if err != nil {
		return nil, fmt.Errorf("certs: issue %s: %w", req.ID, err)
	}
	return &x509svid.SVID{
		ID:           req.ID,
		Certificates: append([]*x509.Certificate{cert}, ca.chain...),
		PrivateKey:   key,
	}, nil
}

// Template checks req as [CA.Issue] does and returns the certificate
// template Issue would sign, with a random serial number. Tests use it as the
// starting point for defective certificates (see [CA.Sign]).
func (ca *CA) Template(req IssueRequest) (*x509.Certificate, error) {
	if req.ID.IsZero() {
		return nil, errors.New("certs: issue: SPIFFE ID is required")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("certs: issue %s: "+format, append([]any{req.ID}, args...)...)
	}
	if td := req.ID.TrustDomain(); td != ca.td {
		return nil, fail("trust domain %q does not match CA trust domain %q", td.Name(), ca.td.Name())
	}
	if req.ID.Path() == "" {
		return nil, fail("SPIFFE ID has no path; a workload SVID needs one, e.g. %s/ns/NAMESPACE/sa/NAME", ca.td.IDString())
	}

	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = DefaultSVIDTTL
	case ttl < 0:
		return nil, fail("TTL %s must be positive", ttl)
	}
	caExpiry := ca.cert.NotAfter
	if !now.Before(caExpiry) {
		return nil, fail("CA expired at %s", caExpiry.UTC().Format(time.RFC3339))
	}
	if now.Add(ttl).After(caExpiry) {
		return nil, fail("TTL %s outlives the CA, which expires at %s", ttl, caExpiry.UTC().Format(time.RFC3339))
	}

	for _, name := range req.DNSNames {
		if err := validateDNSName(name); err != nil {
			return nil, fail("invalid DNS name %q: %w", name, err)
		}
	}
	ips := make([]net.IP, 0, len(req.IPAddresses))
	for _, ip := range req.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, fail("invalid IP address %q", ip.String())
		}
		ips = append(ips, ip)
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, fail("%w", err)
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"trustmesh development"}},
		NotBefore:             now.Add(-clockSkew).UTC(),
		NotAfter:              now.Add(ttl).UTC(),
		URIs:                  []*url.URL{req.ID.URL()},
		DNSNames:              append([]string(nil), req.DNSNames...),
		IPAddresses:           ips,
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, nil
}

// validateDNSName checks that name is a host name fit for a DNS SAN: at most
// 253 characters, dot-separated labels of 1 to 63 letters, digits, hyphens
// or underscores that neither start nor end with a hyphen, and optionally a
// leading "*" wildcard label.
func validateDNSName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > 253 {
		return errors.New("name is longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for i, label := range labels {
		if i == 0 && label == "*" && len(labels) > 1 {
			continue
		}
		if label == "" {
			return errors.New("name has an empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q contains %q; only letters, digits, '-' and '_' are allowed", label, c)
			}
		}
	}
	return nil
}
