package tokens

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DevIssuer is the issuer (iss) of the development tokens that meshctl
// mints and the sample mesh's gateway accepts.
const DevIssuer = "trustmesh-dev"

// TokenType is the typ header of the tokens an [Issuer] signs: a JWT access
// token (RFC 9068). A [Verifier] refuses a token without it (it also
// accepts "application/at+jwt", in any case).
const TokenType = "at+jwt"

// Issuer signs certificate-bound access tokens with one private key. It is
// meant for development and tests (meshctl tokens issue); production tokens
// come from an authorization server. Build one with [NewIssuer].
type Issuer struct {
	name   string
	kid    string
	signer jose.Signer
}

// NewIssuer returns an Issuer named name (the iss of its tokens) that
// signs with the private key in keyFile: PEM PKCS#8 ("PRIVATE KEY") or SEC 1
// ("EC PRIVATE KEY"), ECDSA P-256 (ES256), RSA of at least 2048 bits (RS256)
// or Ed25519 (EdDSA). Its tokens name the key by its RFC 7638 thumbprint
// (kid), as the JWKS written by [InitDev] does.
func NewIssuer(name, keyFile string) (*Issuer, error) {
	if name == "" {
		return nil, errors.New("tokens: issuer needs a name")
	}
	key, err := loadSigningKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return newIssuer(name, key)
}

func newIssuer(name string, key crypto.Signer) (*Issuer, error) {
	pub, err := newPublicKey(key.Public(), "")
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType(TokenType).WithHeader(jose.HeaderKey("kid"), pub.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: pub.alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return &Issuer{name: name, kid: pub.kid, signer: signer}, nil
}

// Issue returns a token for the holder of leaf, valid from now for ttl,
// for audience, and bound to leaf: its typ header is [TokenType], its sub
// leaf's SPIFFE ID, its cnf x5t#S256 [Thumbprint](leaf), and it has a
// random jti.
func (i *Issuer) Issue(leaf *x509.Certificate, audience string, ttl time.Duration, now time.Time) (string, error) {
	switch {
	case leaf == nil:
		return "", errors.New("tokens: issue: no certificate to bind the token to")
	case audience == "":
		return "", errors.New("tokens: issue: no audience")
	case ttl <= 0:
		return "", fmt.Errorf("tokens: issue: ttl %s must be positive", ttl)
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return "", fmt.Errorf("tokens: issue: %w", err)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("tokens: issue: %w", err)
	}
	now = now.Truncate(time.Second)
	return i.Sign(Claims{
		Subject:    id.String(),
		Audience:   []string{audience},
		IssuedAt:   now,
		NotBefore:  now,
		Expiry:     now.Add(ttl),
		ID:         base64.RawURLEncoding.EncodeToString(jti[:]),
		Thumbprint: Thumbprint(leaf),
	})
}

// Sign signs c as it is, with the Issuer's name as iss when c.Issuer is
// empty and the typ header [TokenType]; zero times and an empty thumbprint
// are left out. It is the general form of [Issuer.Issue], for tools and
// tests: nothing stops it from signing a token a [Verifier] refuses, such
// as one whose sub is not the SPIFFE ID of the certificate it is bound to.
func (i *Issuer) Sign(c Claims) (string, error) {
	if c.Issuer == "" {
		c.Issuer = i.name
	}
	out := claims{Claims: jwt.Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  jwt.Audience(c.Audience),
		Expiry:    jwt.NewNumericDate(c.Expiry),
		NotBefore: jwt.NewNumericDate(c.NotBefore),
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		ID:        c.ID,
	}}
	if c.Thumbprint != "" {
		out.Confirmation = &confirmation{X5tS256: c.Thumbprint}
	}
	raw, err := jwt.Signed(i.signer).Claims(out).Serialize()
	if err != nil {
		return "", fmt.Errorf("tokens: sign: %w", err)
	}
	return raw, nil
}

// KeyID returns the kid of the Issuer's key.
func (i *Issuer) KeyID() string { return i.kid }
