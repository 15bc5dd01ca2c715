// Package tokens verifies and issues certificate-bound access tokens
// (RFC 8705): JWTs whose cnf claim carries the SHA-256 thumbprint of the
// client certificate they were issued for ("x5t#S256"), so that a token is
// worth nothing without the private key of that certificate. A token copied
// from a log and replayed over another mutual-TLS connection is refused.
//
// A [Verifier] checks a token presented over a connection against the
// connection's verified leaf certificate:
//
//	v, err := tokens.NewVerifier(tokens.Config{
//		Issuer:   tokens.DevIssuer,
//		Audience: "spiffe://shop.example/ns/shop/sa/gateway",
//		JWKSFile: "certs/dev/token-jwks.json",
//	})
//	claims, err := v.Verify(raw, principal.Leaf, time.Now())
//
// It accepts ES256, RS256 and EdDSA signatures only (never "none", never an
// HMAC), with keys from a PEM file or a JSON Web Key Set file, and checks the
// issuer (iss), the audience (aud), the expiry (exp, required), the start of
// validity (nbf) and the binding (cnf x5t#S256, required). Every refusal is
// an error of one line that says what is wrong, e.g. "tokens: token expired
// at 2025-06-01T10:15:00Z" or "tokens: token is bound to another
// certificate".
//
// An [Issuer] mints such tokens for development (meshctl tokens issue), with
// a key written by [InitDev] (meshctl tokens init). JOSE parsing, signing and
// signature checks are go-jose's (github.com/go-jose/go-jose/v4).
package tokens
