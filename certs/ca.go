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
	"slices"
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

// CA is a development certificate authority for one SPIFFE trust domain,
// with an ECDSA P-256 key and a certificate whose only URI SAN is the trust
// domain's SPIFFE ID (for example spiffe://example.org). It is either a
// self-signed root ([NewCA]), which issues X.509-SVIDs directly, or an
// intermediate signed by a root ([CA.NewIntermediate]), whose SVIDs carry
// the chain leaf first, then the intermediate, so that peers holding only
// the root in their bundle verify them.
//
// A CA also has an ECDSA P-256 key that signs JWT-SVIDs for its trust
// domain ([CA.MintJWTSVID]), published with the root in
// [CA.SPIFFEBundle].
//
// A CA is immutable and safe for concurrent use.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate // the signing certificate
	key  crypto.Signer
	// chain is what follows a leaf in an issued SVID: cert and the
	// intermediates above it, in order; nil for a root.
	chain []*x509.Certificate
	// roots are the trust anchors: [cert] for a root, the root an
	// intermediate chains to otherwise.
	roots []*x509.Certificate
	// jwt signs JWT-SVIDs (jwt_ca.go); an intermediate shares its root's.
	// Nil for a CA loaded from a directory that has no [JWTKeyFile].
	jwt *jwtSigner
}

// CAOption configures [NewCA].
type CAOption interface {
	applyToCA(*caConfig)
}

type caConfig struct {
	validity   time.Duration
	now        time.Time
	maxPathLen int
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

// WithMaxPathLen sets how many intermediate CAs may stand between a root
// made by [NewCA] and the SVIDs: 1 lets the root sign an intermediate with
// [CA.NewIntermediate]. By default, it is 0: the root issues SVIDs directly
// and peers refuse any chain with an intermediate. A negative value leaves
// the default in place. Intermediates ignore it: they always have 0.
func WithMaxPathLen(n int) CAOption {
	return caOptionFunc(func(c *caConfig) {
		if n >= 0 {
			c.maxPathLen = n
		}
	})
}

// NewCA creates a root CA for td with a fresh ECDSA P-256 key (and another
// for JWT-SVIDs). The
// certificate is valid from one minute before its creation time (to
// tolerate clock skew) until the end of its validity; see [WithValidity],
// [WithNow] and [WithMaxPathLen].
func NewCA(td spiffeid.TrustDomain, opts ...CAOption) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("certs: new CA: trust domain is required")
	}
	cfg := newCAConfig(DefaultCAValidity, opts)

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
		MaxPathLen:            cfg.maxPathLen,
		MaxPathLenZero:        cfg.maxPathLen == 0,
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
	jwt, err := newJWTSigner()
	if err != nil {
		return nil, fmt.Errorf("certs: new CA for %s: %w", td.Name(), err)
	}
	return &CA{td: td, cert: cert, key: key, roots: []*x509.Certificate{cert}, jwt: jwt}, nil
}

func newCAConfig(validity time.Duration, opts []CAOption) caConfig {
	cfg := caConfig{validity: validity}
	for _, opt := range opts {
		opt.applyToCA(&cfg)
	}
	if cfg.now.IsZero() {
		cfg.now = time.Now()
	}
	return cfg
}

// TrustDomain returns the trust domain the CA issues SVIDs for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the certificate the CA signs with: the self-signed
// root, or the intermediate's certificate for an intermediate CA. Callers
// must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// IsIntermediate reports whether the CA is an intermediate, whose SVIDs
// carry its certificate after the leaf.
func (ca *CA) IsIntermediate() bool { return len(ca.chain) > 0 }

// Chain returns the certificates that follow the leaf in every SVID the CA
// issues: nil for a root, the intermediate's certificate (and any above it
// but below the root) for an intermediate. The slice is a copy; the
// certificates are shared and must not be modified.
func (ca *CA) Chain() []*x509.Certificate { return slices.Clone(ca.chain) }

// Bundle returns a new X.509 trust bundle for the CA's trust domain holding
// the root certificate: the CA's own for a root, the root it chains to for
// an intermediate. It satisfies go-spiffe's x509bundle.Source.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, ca.roots)
}

// DefaultIntermediateValidity is how long an intermediate made by
// [CA.NewIntermediate] is valid unless [WithValidity] says otherwise: two
// years of 365 days (so it can issue SVIDs of up to a year for its first
// year), and never beyond its parent.
const DefaultIntermediateValidity = 2 * 365 * 24 * time.Hour

// NewIntermediate creates an intermediate CA signed by ca, with a fresh
// ECDSA P-256 key, for ca's trust domain: its certificate has the trust
// domain's SPIFFE ID as its only URI SAN, may sign SVIDs but no further
// CA (path length 0), and is valid from one minute before its creation
// time until the end of its validity ([DefaultIntermediateValidity] unless
// [WithValidity] says otherwise), cut short to ca's own expiry. ca must
// allow an intermediate: a root made with [WithMaxPathLen](1) or more.
// [WithMaxPathLen] is ignored.
func (ca *CA) NewIntermediate(opts ...CAOption) (*CA, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("certs: new intermediate CA for %s: "+format, append([]any{ca.td.Name()}, args...)...)
	}
	if ca.cert.MaxPathLen == 0 || ca.cert.MaxPathLen > 0 && len(ca.chain)+1 > ca.cert.MaxPathLen {
		return nil, fail("the CA certificate allows no further intermediate (path length %d); create the root with WithMaxPathLen(1)", ca.cert.MaxPathLen)
	}
	cfg := newCAConfig(DefaultIntermediateValidity, opts)
	if !cfg.now.Before(ca.cert.NotAfter) {
		return nil, fail("parent CA expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := cfg.now.Add(cfg.validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fail("generate key: %w", err)
	}
	cert, err := ca.sign(&x509.Certificate{
		Subject: pkix.Name{
			Organization: []string{"trustmesh development"},
			CommonName:   "trustmesh development intermediate CA " + ca.td.Name(),
		},
		NotBefore:             cfg.now.Add(-clockSkew).UTC(),
		NotAfter:              notAfter.UTC(),
		URIs:                  []*url.URL{ca.td.ID().URL()},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, key.Public())
	if err != nil {
		return nil, fail("%w", err)
	}
	return &CA{
		td:    ca.td,
		cert:  cert,
		key:   key,
		chain: append([]*x509.Certificate{cert}, ca.chain...),
		roots: ca.roots,
		jwt:   ca.jwt,
	}, nil
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
