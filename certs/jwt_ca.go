package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/josekey"
	"github.com/trustmesh/trustmesh/internal/pemfile"
)

// File names of the development CA's JWT-SVID material, beside
// [BundleFile] and [CAKeyFile].
const (
	// JWTKeyFile holds the CA's JWT-SVID signing key, an ECDSA P-256 key in
	// PKCS#8 PEM ("PRIVATE KEY"), mode 0600.
	JWTKeyFile = "jwt-key.pem"
	// SPIFFEBundleFile holds the trust bundle in the SPIFFE bundle format
	// (a JWK Set whose keys carry their use: the root certificate as
	// x509-svid, the JWT-SVID signing key as jwt-svid), mode 0644, for
	// [identity.ParseBundle] and [LoadSPIFFEBundle], or anything that reads
	// SPIRE's `bundle show -format spiffe`.
	SPIFFEBundleFile = "bundle.json"
)

// DefaultJWTSVIDTTL is the lifetime of a JWT-SVID when [JWTRequest.TTL] is
// zero: five minutes, SPIRE's default.
const DefaultJWTSVIDTTL = 5 * time.Minute

// MaxJWTSVIDTTL is the longest lifetime [CA.MintJWTSVID] gives a JWT-SVID:
// a bearer token should not outlive the minutes it is needed for.
const MaxJWTSVIDTTL = time.Hour

// jwtSigner is the JWT-SVID signing key of a development CA.
type jwtSigner struct {
	key *ecdsa.PrivateKey
	kid string // base64url SHA-256 JWK thumbprint (RFC 7638) of the public key
}

// newJWTSigner returns a signer with a fresh ECDSA P-256 key.
func newJWTSigner() (*jwtSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate JWT-SVID signing key: %w", err)
	}
	return jwtSignerFrom(key)
}

// jwtSignerFrom returns the signer of key, which must be ECDSA P-256.
func jwtSignerFrom(key crypto.Signer) (*jwtSigner, error) {
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("JWT-SVID signing key is a %T, not an ECDSA P-256 key", key)
	}
	kid, err := josekey.ID(ec.Public())
	if err != nil {
		return nil, fmt.Errorf("JWT-SVID signing key: %w", err)
	}
	return &jwtSigner{key: ec, kid: kid}, nil
}

// JWTRequest describes a JWT-SVID for [CA.MintJWTSVID].
type JWTRequest struct {
	// ID is the SPIFFE ID of the sub claim. It is required, must be in the
	// CA's trust domain and must have a path.
	ID spiffeid.ID
	// Audience is the aud claim: at least one value, each non-empty. One is
	// strongly recommended (JWT-SVID 7.2): the SPIFFE ID of the server the
	// token is for.
	Audience []string
	// TTL is how long the token is valid, counted from Now. By default, it
	// is [DefaultJWTSVIDTTL]; it must not be negative nor more than
	// [MaxJWTSVIDTTL].
	TTL time.Duration
	// Now is the issuance time (iat). By default (the zero time), it is
	// time.Now().
	Now time.Time
}

// JWTKeyID returns the kid of the CA's JWT-SVID signing key (its RFC 7638
// thumbprint), or "" when the CA has none (one loaded from a directory
// written before trustmesh made them; [Init] adds one).
func (ca *CA) JWTKeyID() string {
	if ca.jwt == nil {
		return ""
	}
	return ca.jwt.kid
}

// MintJWTSVID mints a JWT-SVID for req, signed ES256 with the CA's JWT-SVID
// signing key: header alg, kid and typ JWT; claims sub, aud, exp and iat.
// It is for development and tests; in production JWT-SVIDs come from the
// Workload API ([WorkloadSource.FetchJWTSVID]). The token is verified
// against [CA.SPIFFEBundle] before it is returned, for its first audience.
func (ca *CA) MintJWTSVID(req JWTRequest) (*identity.JWTSVID, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("certs: mint JWT-SVID for %s: "+format, append([]any{req.ID}, args...)...)
	}
	switch {
	case ca.jwt == nil:
		return nil, fail("the CA of %q has no JWT-SVID signing key (run meshctl certs init to add one)", ca.td.Name())
	case req.ID.IsZero():
		return nil, errors.New("certs: mint JWT-SVID: SPIFFE ID is required")
	case req.ID.TrustDomain() != ca.td:
		return nil, fail("not in the CA's trust domain %q", ca.td.Name())
	case req.ID.Path() == "":
		return nil, fail("SPIFFE ID has no path")
	case len(req.Audience) == 0:
		return nil, fail("no audience")
	case req.TTL < 0 || req.TTL > MaxJWTSVIDTTL:
		return nil, fail("TTL %s must be from 0 (the default, %s) to %s", req.TTL, DefaultJWTSVIDTTL, MaxJWTSVIDTTL)
	}
	for _, aud := range req.Audience {
		if aud == "" {
			return nil, fail("empty audience")
		}
	}
	now, ttl := req.Now, req.TTL
	if now.IsZero() {
		now = time.Now()
	}
	if ttl == 0 {
		ttl = DefaultJWTSVIDTTL
	}
	claims, err := json.Marshal(struct {
		Sub string   `json:"sub"`
		Aud []string `json:"aud"`
		Exp int64    `json:"exp"`
		Iat int64    `json:"iat"`
	}{req.ID.String(), req.Audience, now.Add(ttl).Unix(), now.Unix()})
	if err != nil {
		return nil, fail("%w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ca.jwt.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), ca.jwt.kid))
	if err != nil {
		return nil, fail("%w", err)
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return nil, fail("%w", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		return nil, fail("%w", err)
	}
	svid, err := identity.VerifyJWTSVID(token, ca, req.Audience[0], now)
	if err != nil {
		return nil, fail("%w", err)
	}
	return svid, nil
}

// SPIFFEBundle returns the CA's trust bundle in the SPIFFE bundle format:
// the root certificate (use x509-svid, as in [CA.Bundle]) and, when the CA
// has one, its JWT-SVID signing key (use jwt-svid).
func (ca *CA) SPIFFEBundle() *identity.Bundle {
	keys := make([]identity.BundleKey, 0, len(ca.roots)+1)
	for _, root := range ca.roots {
		keys = append(keys, identity.BundleKey{Use: identity.UseX509SVID, Key: root.PublicKey, Certificate: root})
	}
	if ca.jwt != nil {
		keys = append(keys, identity.BundleKey{Use: identity.UseJWTSVID, KeyID: ca.jwt.kid, Algorithm: string(jose.ES256), Key: ca.jwt.key.Public()})
	}
	b, err := identity.NewBundle(ca.td, keys...)
	if err != nil { // the keys are the CA's own: cannot happen
		panic(fmt.Sprintf("certs: SPIFFE bundle of %s: %v", ca.td.Name(), err))
	}
	return b
}

// BundleForTrustDomain returns [CA.SPIFFEBundle] for the CA's trust domain.
// It makes a CA an [identity.BundleSource], to verify the JWT-SVIDs it
// mints.
func (ca *CA) BundleForTrustDomain(td spiffeid.TrustDomain) (*identity.Bundle, error) {
	if td != ca.td {
		return nil, fmt.Errorf("certs: no bundle for trust domain %q (the CA is for %q)", td.Name(), ca.td.Name())
	}
	return ca.SPIFFEBundle(), nil
}

// JWTSource returns a source of JWT-SVIDs for id minted by ca, each valid
// for ttl (0: [DefaultJWTSVIDTTL]), for development and tests: it has the
// FetchJWTSVID method of [WorkloadSource], which mesh clients take.
func (ca *CA) JWTSource(id spiffeid.ID, ttl time.Duration) *DevJWTSource {
	return &DevJWTSource{ca: ca, id: id, ttl: ttl}
}

// DevJWTSource mints JWT-SVIDs for one SPIFFE ID from a development CA;
// see [CA.JWTSource]. It is safe for concurrent use.
type DevJWTSource struct {
	ca  *CA
	id  spiffeid.ID
	ttl time.Duration
}

// FetchJWTSVID mints a JWT-SVID for audience.
func (s *DevJWTSource) FetchJWTSVID(ctx context.Context, audience string) (*identity.JWTSVID, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("certs: mint JWT-SVID for %s: %w", s.id, err)
	}
	return s.ca.MintJWTSVID(JWTRequest{ID: s.id, Audience: []string{audience}, TTL: s.ttl})
}

// LoadSPIFFEBundle reads a bundle in the SPIFFE bundle format from path
// (such as the [SPIFFEBundleFile] of a development directory) for td; a
// zero td is taken from the file's first x509-svid certificate. See
// [identity.ParseBundle] for what is kept.
func LoadSPIFFEBundle(path string, td spiffeid.TrustDomain) (*identity.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: load SPIFFE bundle: %w", err)
	}
	if td.IsZero() {
		// Read the certificates under a placeholder name first: the trust
		// domain is only a label until a certificate names it.
		probe, err := identity.ParseBundle(spiffeid.RequireTrustDomainFromString("placeholder.invalid"), data)
		if err != nil {
			return nil, fmt.Errorf("certs: load SPIFFE bundle %s: %w", path, err)
		}
		roots := probe.X509Authorities()
		if len(roots) == 0 {
			return nil, fmt.Errorf("certs: load SPIFFE bundle %s: no x509-svid certificate names the trust domain (give it)", path)
		}
		if td, err = trustDomainOf(roots[0]); err != nil {
			return nil, fmt.Errorf("certs: load SPIFFE bundle %s: %w", path, err)
		}
	}
	b, err := identity.ParseBundle(td, data)
	if err != nil {
		return nil, fmt.Errorf("certs: load SPIFFE bundle %s: %w", path, err)
	}
	return b, nil
}

// loadJWT reads the JWT-SVID signing key of the CA in dir, if there is
// one: a directory written before trustmesh made them has none.
func (ca *CA) loadJWT(dir string) error {
	path := filepath.Join(dir, JWTKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	key, err := parseKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if ca.jwt, err = jwtSignerFrom(key); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// withJWTSigner returns a copy of ca with a fresh JWT-SVID signing key.
func (ca *CA) withJWTSigner() (*CA, error) {
	s, err := newJWTSigner()
	if err != nil {
		return nil, fmt.Errorf("certs: CA for %s: %w", ca.td.Name(), err)
	}
	c := *ca
	c.jwt = s
	return &c, nil
}

// saveJWT writes the CA's JWT-SVID signing key to dir as [JWTKeyFile]
// (when writeKey) and its SPIFFE bundle as [SPIFFEBundleFile] (when it is
// not already there as it would be written), each atomically, and returns
// the paths it wrote.
func (ca *CA) saveJWT(dir string, writeKey bool) ([]string, error) {
	var written []string
	if writeKey {
		keyPEM, err := pemfile.MarshalPrivateKey(ca.jwt.key)
		if err != nil {
			return nil, fmt.Errorf("certs: save JWT-SVID signing key to %s: %w", dir, err)
		}
		path := filepath.Join(dir, JWTKeyFile)
		if err := pemfile.WriteAtomic(path, keyPEM, PrivateFileMode); err != nil {
			return nil, fmt.Errorf("certs: save JWT-SVID signing key: %w", err)
		}
		written = append(written, path)
	}
	doc, err := ca.SPIFFEBundle().Marshal()
	if err != nil {
		return written, fmt.Errorf("certs: save SPIFFE bundle: %w", err)
	}
	path := filepath.Join(dir, SPIFFEBundleFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, doc) {
		return written, nil
	}
	if err := pemfile.WriteAtomic(path, doc, PublicFileMode); err != nil {
		return written, fmt.Errorf("certs: save SPIFFE bundle: %w", err)
	}
	return append(written, path), nil
}
