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
// typ header (an access token's, RFC 9068: "at+jwt" or "application/at+jwt"),
// the issuer (iss), the audience (aud), the start of validity (nbf), the
// expiry (exp, required), the issue time (iat, not in the future), the
// binding (cnf x5t#S256, required) and the subject (sub, required): it must
// be the SPIFFE ID of the certificate, so that a token minted for bob is
// refused on alice's connection even when it is bound to her certificate.
// Every refusal is an error of one line that says what is wrong, e.g.
// "tokens: token expired at 2025-06-01T10:15:00Z" or "tokens: token is bound
// to another certificate".
//
// Clock skew: exp, nbf and iat are compared with [Config.Leeway] of
// tolerance, none by default. A verifier given 30 s (what the sample mesh's
// services use) accepts a token until 30 s after its exp, and from 30 s
// before its nbf.
//
// An [Issuer] mints such tokens for development (meshctl tokens issue), with
// a key written by [InitDev] (meshctl tokens init): typ at+jwt, sub the
// certificate's SPIFFE ID. JOSE parsing, signing and claim validation are
// go-jose's (github.com/go-jose/go-jose/v4).
package tokens
