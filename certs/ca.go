package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultCAValidity is how long a CA made by [NewCA] is valid unless
// [WithValidity] says otherwise: ten years of 365 days.
const DefaultCAValidity = 10 * 365 * 24 * time.Hour

// clockSkew is how far back NotBefore is set on every certificate, so that a
// peer whose clock runs slightly behind still accepts it.
const clockSkew = time.Minute

// CA is a development certificate authority for one SPIFFE trust domain: a
// self-signed ECDSA P-256 root whose only URI SAN is the trust domain's
// SPIFFE ID (for example spiffe://shop.example). It issues X.509-SVIDs
// directly, without intermediates.
//
// A CA is immutable and safe for concurrent use.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

// CAOption configures [NewCA].
type CAOption interface {
	applyToCA(*caConfig)
}

type caConfig struct {
	validity time.Duration
	now      time.Time
}

type caOptionFunc func(*caConfig)

func (f caOptionFunc) applyToCA(c *caConfig) { f(c) }

// WithValidity sets how long the CA certificate is valid, counted from its
// creation time. By default, it is [DefaultCAValidity]. A zero or negative
// duration leaves the default in place.
func WithValidity(d time.Duration) CAOption {
	return caOptionFunc(func(c *caConfig) {
		if d > 0 {
			c.validity = d
		}
	})
}

// WithNow sets the CA's creation time, from which its validity is counted.
// By default, it is time.Now(). A zero time leaves the default in place.
func WithNow(t time.Time) CAOption {
	return caOptionFunc(func(c *caConfig) {
		if !t.IsZero() {
			c.now = t
		}
	})
}

// NewCA creates a CA for td with a fresh ECDSA P-256 key. The certificate is
// valid from one minute before its creation time (to tolerate clock skew)
// until the end of its validity; see [WithValidity] and [WithNow].
func NewCA(td spiffeid.TrustDomain, opts ...CAOption) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("certs: new CA: trust domain is required")
	}
	cfg := caConfig{validity: DefaultCAValidity}
	for _, opt := range opts {
		opt.applyToCA(&cfg)
	}
	if cfg.now.IsZero() {
		cfg.now = time.Now()
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: new CA for %s: generate key: %w", td.Name(), err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("certs: new CA for %s: %w", td.Name(), err)
	}
	name := pkix.Name{
		Organization: []string{"trustmesh development"},
		CommonName:   "trustmesh development CA " + td.Name(),
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             cfg.now.Add(-clockSkew).UTC(),
		NotAfter:              cfg.now.Add(cfg.validity).UTC(),
		URIs:                  []*url.URL{td.ID().URL()},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: new CA for %s: %w", td.Name(), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: new CA for %s: %w", td.Name(), err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// TrustDomain returns the trust domain the CA issues SVIDs for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the CA's self-signed root certificate. Callers must
// not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Bundle returns a new X.509 trust bundle for the CA's trust domain holding
// the CA certificate. It satisfies go-spiffe's x509bundle.Source.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Sign signs template with the CA key for the public key pub and returns
// the parsed certificate. It performs none of the checks of [CA.Issue]: it
// exists so that tests can mint deliberately defective certificates. A nil
// template.SerialNumber is replaced by a random 128-bit serial; template
// itself is not modified.
func (ca *CA) Sign(template *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	cert, err := ca.sign(template, pub)
	if err != nil {
		return nil, fmt.Errorf("certs: sign: %w", err)
	}
	return cert, nil
}

// sign is [CA.Sign] without the error prefix, shared with [CA.Issue].
func (ca *CA) sign(template *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if template == nil {
		return nil, errors.New("template is nil")
	}
	tmpl := *template
	if tmpl.SerialNumber == nil {
		serial, err := randomSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial returns a random positive serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
