package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"time"
)

// Claims are the claims of a verified token.
type Claims struct {
	// Issuer is the iss claim.
	Issuer string
	// Subject is the sub claim; tokens minted by an [Issuer] carry the
	// SPIFFE ID of the certificate they are bound to.
	Subject string
	// Audience is the aud claim.
	Audience []string
	// Expiry is the exp claim.
	Expiry time.Time
	// NotBefore is the nbf claim, or the zero time if there is none.
	NotBefore time.Time
	// IssuedAt is the iat claim, or the zero time if there is none.
	IssuedAt time.Time
	// ID is the jti claim.
	ID string
	// Thumbprint is the cnf claim's x5t#S256 member: the [Thumbprint] of the
	// certificate the token is bound to.
	Thumbprint string
}

// Thumbprint returns the RFC 8705 thumbprint of cert: the unpadded
// base64url encoding of the SHA-256 hash of its DER encoding, the value of
// a bound token's cnf x5t#S256 claim.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type contextKey struct{}

// NewContext returns a copy of ctx that carries the claims of the token
// the current call presented.
func NewContext(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the claims of the verified token of the current
// call, and whether there was one: the interceptors put them there for the
// methods whose policy rule requires a token.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(contextKey{}).(Claims)
	return c, ok
}
