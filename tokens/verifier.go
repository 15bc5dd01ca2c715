package tokens

import (
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// MaxTokenSize is the length, in bytes, of the longest token a [Verifier]
// reads; a longer one is refused before it is parsed.
const MaxTokenSize = 8 << 10

// Config configures a [Verifier].
type Config struct {
	// Issuer is the value the iss claim must have. Required.
	Issuer string
	// Audience is the value the aud claim must contain: the service that
	// accepts the tokens. Required.
	Audience string
	// KeyFile is a PEM file of the issuer's public keys ("PUBLIC KEY"
	// blocks, PKIX). Exactly one of KeyFile and JWKSFile is set.
	KeyFile string
	// JWKSFile is a JSON Web Key Set file of the issuer's public keys (what
	// [InitDev] writes). Exactly one of KeyFile and JWKSFile is set.
	JWKSFile string
	// Leeway is the clock skew tolerated when checking exp, nbf and iat: a
	// token is accepted until Leeway after its expiry, from Leeway before
	// its nbf, and with an iat up to Leeway in the future. The default,
	// zero, tolerates none; 30 seconds is a common choice between hosts
	// whose clocks are kept by NTP (the sample mesh's services use it).
	Leeway time.Duration
}

// Verifier checks access tokens against the client certificate they are
// presented with. Build one with [NewVerifier]; it is immutable and safe
// for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
	keys     []publicKey
}

// NewVerifier returns a Verifier for the tokens of cfg.Issuer, with its keys
// read once from cfg.KeyFile or cfg.JWKSFile. Every key must be a public
// ECDSA P-256 (ES256), RSA of at least 2048 bits (RS256) or Ed25519 (EdDSA)
// key; a JWKS may not hold symmetric or private keys.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("tokens: verifier needs an issuer")
	case cfg.Audience == "":
		return nil, errors.New("tokens: verifier needs an audience")
	case cfg.KeyFile == "" && cfg.JWKSFile == "":
		return nil, errors.New("tokens: verifier needs the issuer's keys (a key file or a JWKS file)")
	case cfg.KeyFile != "" && cfg.JWKSFile != "":
		return nil, errors.New("tokens: verifier takes a key file or a JWKS file, not both")
	case cfg.Leeway < 0:
		return nil, fmt.Errorf("tokens: leeway %s must not be negative", cfg.Leeway)
	}
	var keys []publicKey
	var err error
	if cfg.KeyFile != "" {
		keys, err = loadKeyFile(cfg.KeyFile)
	} else {
		keys, err = loadJWKS(cfg.JWKSFile)
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return &Verifier{issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway, keys: keys}, nil
}

// claims is a token's payload as go-jose encodes and decodes it.
type claims struct {
	jwt.Claims
	Confirmation *confirmation `json:"cnf,omitempty"`
}

// confirmation is the cnf claim of a certificate-bound token (RFC 8705).
type confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// Verify checks raw, a compact JWT, as presented at time now over a
// connection whose verified client certificate is leaf, and returns its
// claims. It checks, in this order: the signature algorithm (ES256, RS256
// or EdDSA; never "none" nor an HMAC), the signature with the issuer's key
// named by the token's kid (or its only key), the typ header (an access
// token's, RFC 9068: "at+jwt" or "application/at+jwt", in any case), the
// issuer (iss), the audience (aud), the start of validity (nbf), the expiry
// (exp, required), that it was not issued in the future (iat), that the
// token is bound to leaf (cnf x5t#S256 equal to [Thumbprint](leaf)), and
// that it is for the holder of leaf (sub equal to leaf's SPIFFE ID, read
// from its one URI SAN). Times are compared with the configured
// [Config.Leeway] of clock skew. The claims are looked at only once the
// signature is good. Every error is one line starting with "tokens: ".
func (v *Verifier) Verify(raw string, leaf *x509.Certificate, now time.Time) (Claims, error) {
	switch {
	case raw == "":
		return Claims{}, errors.New("tokens: no token")
	case len(raw) > MaxTokenSize:
		return Claims{}, fmt.Errorf("tokens: token is longer than %d bytes", MaxTokenSize)
	case leaf == nil:
		return Claims{}, errors.New("tokens: no client certificate to check the token's binding against")
	}
	tok, err := jwt.ParseSigned(raw, accepted)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return Claims{}, fmt.Errorf("tokens: alg %q is not accepted (want ES256, RS256 or EdDSA)", alg.Got)
		}
		return Claims{}, fmt.Errorf("tokens: malformed token: %s", josekey.Message(err))
	}
	header := tok.Headers[0]
	key, err := v.key(header.KeyID)
	if err != nil {
		return Claims{}, err
	}
	if alg := jose.SignatureAlgorithm(header.Algorithm); alg != key.alg {
		return Claims{}, fmt.Errorf("tokens: alg %s does not fit the issuer's key %q (%s key: want %s)", alg, key.kid, josekey.AlgKind(key.alg), key.alg)
	}
	var c claims
	if err := tok.Claims(key.key, &c); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return Claims{}, errors.New("tokens: bad signature")
		}
		return Claims{}, fmt.Errorf("tokens: malformed claims: %s", josekey.Message(err))
	}
	if err := checkType(header); err != nil {
		return Claims{}, err
	}
	out := Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  c.Audience,
		Expiry:    c.Expiry.Time(),
		NotBefore: c.NotBefore.Time(),
		IssuedAt:  c.IssuedAt.Time(),
		ID:        c.ID,
	}
	if c.Confirmation != nil {
		out.Thumbprint = c.Confirmation.X5tS256
	}
	switch {
	case c.Issuer == "":
		return Claims{}, errors.New("tokens: token has no issuer (iss)")
	case len(c.Audience) == 0:
		return Claims{}, errors.New("tokens: token has no audience (aud)")
	case c.Expiry == nil:
		return Claims{}, errors.New("tokens: token has no expiry (exp)")
	}
	expected := jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: now}
	if err := c.Claims.ValidateWithLeeway(expected, v.leeway); err != nil {
		return Claims{}, v.claimsError(out, err)
	}
	switch {
	case out.Thumbprint == "":
		return Claims{}, errors.New("tokens: token is not bound to a certificate (no cnf x5t#S256 claim)")
	case subtle.ConstantTimeCompare([]byte(out.Thumbprint), []byte(Thumbprint(leaf))) != 1:
		return Claims{}, errors.New("tokens: token is bound to another certificate")
	case c.Subject == "":
		return Claims{}, errors.New("tokens: token has no subject (sub)")
	}
	holder, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return Claims{}, fmt.Errorf("tokens: client certificate has no SPIFFE ID to check the token's subject against: %w", err)
	}
	if c.Subject != holder.String() {
		return Claims{}, fmt.Errorf("tokens: token is for subject %q, not the certificate's %q", clip.String(c.Subject, maxEcho), holder)
	}
	return out, nil
}

// accessTokenType is the media type of a JWT access token (RFC 9068, 4),
// which the typ header names with or without its "application/" prefix.
const accessTokenType = "application/" + TokenType

// checkType fails unless the typ header of a token says it is a JWT access
// token. RFC 9068 requires resource servers to check it, so that an ID
// token or another JWT of the same issuer is not taken for one; media types
// compare without regard to case (RFC 7515, 4.1.9).
func checkType(h jose.Header) error {
	typ, ok := h.ExtraHeaders[jose.HeaderType]
	if !ok {
		return fmt.Errorf("tokens: token has no typ header (want %q, RFC 9068)", TokenType)
	}
	s, isString := typ.(string)
	if isString && (strings.EqualFold(s, TokenType) || strings.EqualFold(s, accessTokenType)) {
		return nil
	}
	shown := clip.String(fmt.Sprint(typ), maxEcho) // a JSON number, object, ...
	if isString {
		shown = strconv.Quote(clip.String(s, maxEcho))
	}
	return fmt.Errorf("tokens: token typ %s is not an access token's (want %q, RFC 9068)", shown, TokenType)
}

// claimsError says which of go-jose's checks of c failed, as err.
func (v *Verifier) claimsError(c Claims, err error) error {
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fmt.Errorf("tokens: token is from issuer %q, not %q", clip.String(c.Issuer, maxEcho), v.issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Errorf("tokens: token is for audience %q, not %q", clip.String(strings.Join(c.Audience, ", "), maxEcho), v.audience)
	case errors.Is(err, jwt.ErrNotValidYet):
		return fmt.Errorf("tokens: token is not valid before %s", formatTime(c.NotBefore))
	case errors.Is(err, jwt.ErrExpired):
		return fmt.Errorf("tokens: token expired at %s", formatTime(c.Expiry))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fmt.Errorf("tokens: token was issued in the future, at %s", formatTime(c.IssuedAt))
	default:
		return fmt.Errorf("tokens: invalid claims: %s", josekey.Message(err))
	}
}

// key returns the issuer's key named kid; with no kid, the issuer's only
// key.
func (v *Verifier) key(kid string) (publicKey, error) {
	if kid == "" {
		if len(v.keys) == 1 {
			return v.keys[0], nil
		}
		return publicKey{}, fmt.Errorf("tokens: token has no kid and the issuer has %d keys", len(v.keys))
	}
	for _, k := range v.keys {
		if k.kid == kid {
			return k, nil
		}
	}
	return publicKey{}, fmt.Errorf("tokens: no issuer key with kid %q", clip.String(kid, maxEcho))
}

// maxEcho bounds how much of a string from an unverified token goes into
// an error: such a string is cut with [clip.String] to maxEcho bytes on a
// rune boundary and marked "..." when longer.
const maxEcho = 64

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
