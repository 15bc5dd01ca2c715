package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// JWTSVIDLeeway is the clock skew [VerifyJWTSVID] tolerates: a JWT-SVID is
// accepted until this long after its exp, and with an nbf or iat up to
// this long in the future. The JWT-SVID specification allows "a small
// amount of leeway"; go-spiffe allows a minute.
const JWTSVIDLeeway = 30 * time.Second

// MaxJWTSVIDSize is the length of the longest token [VerifyJWTSVID] reads
// (a JWT-SVID from SPIRE is well under 1 KiB, even signed with RSA-4096).
const MaxJWTSVIDSize = 8 << 10

// jwtAlgorithms are the values of alg a JWT-SVID may have (JWT-SVID 2.1:
// RFC 7518 3.3, 3.4 and 3.5); a validator must reject any other.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

// jwtHeaders are the header parameters a JWT-SVID may carry (JWT-SVID 2:
// any other "MUST NOT be included").
var jwtHeaders = []string{"alg", "kid", "typ"}

// JWTSVID is a verified JWT-SVID: what [VerifyJWTSVID] proved about a
// token, and the token itself. It is the JWT counterpart of [Principal].
type JWTSVID struct {
	// ID is the SPIFFE ID of the sub claim: the workload the token was
	// issued to.
	ID spiffeid.ID
	// Audience is the aud claim, one value or more.
	Audience []string
	// Expiry is the exp claim.
	Expiry time.Time
	// IssuedAt is the iat claim, or the zero time when there is none.
	IssuedAt time.Time
	// KeyID is the kid of the bundle key whose signature verified.
	KeyID string
	// Claims are all the claims of the token, registered and private, as
	// encoding/json decodes them (numbers as float64).
	Claims map[string]any

	token string
}

// Marshal returns the token, as it was verified (or minted): the value to
// send as "authorization: Bearer TOKEN".
func (s *JWTSVID) Marshal() string { return s.token }

// VerifyJWTSVID verifies token, a JWT-SVID in JWS Compact Serialization,
// for audience (the value this validator identifies with, e.g. its own
// SPIFFE ID), against the SPIFFE bundles of bundles, as of now (the zero
// time means time.Now()), and returns what it proves. It applies the
// JWT-SVID specification (sections 2 to 6) and the SPIFFE bundle format
// to the letter, in this order:
//
//   - the token is at most [MaxJWTSVIDSize] bytes, three base64url parts;
//   - its header is a JSON object (no member twice) of alg, kid and typ
//     only: any other parameter (crit, jku, jwk, x5c, cty, ...) is refused;
//   - alg is one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384
//     and PS512 (never none or an HMAC), checked before anything else is
//     read; typ, if set, is JWT or JOSE; kid, if set, is a non-empty string;
//   - sub is a SPIFFE ID with a path (the ID of a workload, not of a trust
//     domain), and its trust domain's bundle, from bundles, is the one whose
//     keys may verify it;
//   - the signature verifies with one of that bundle's keys of use
//     jwt-svid only (a CA certificate, use x509-svid, never verifies a
//     JWT), that fits alg (EC on the curve of ES*, RSA of 2048 bits or more
//     for RS* and PS*, the key's own alg if it has one): the key kid names
//     when the token has one, else each of them in turn. A bundle without
//     jwt-svid keys trusts no JWT-SVID;
//   - aud is present, a string or a non-empty array of strings, and
//     contains audience exactly;
//   - exp is present and now is before it (with [JWTSVIDLeeway]); nbf and
//     iat, if present, are not later than now (with the leeway).
//
// Claims the specification does not restrict are returned in
// [JWTSVID.Claims], unchecked. Every error starts "identity: jwt-svid: "
// and names the rule that was broken; what it quotes from the token is
// clipped.
func VerifyJWTSVID(token string, bundles BundleSource, audience string, now time.Time) (*JWTSVID, error) {
	switch {
	case bundles == nil:
		return nil, jwtErr("no bundle source")
	case audience == "":
		return nil, jwtErr("no audience to verify for")
	}
	if now.IsZero() {
		now = time.Now()
	}
	tok, err := parseJWTSVID(token)
	if err != nil {
		return nil, err
	}
	td := tok.subject.TrustDomain()
	b, err := bundles.BundleForTrustDomain(td)
	switch {
	case err != nil:
		return nil, jwtErr("subject %s: %w", tok.subject, err)
	case b == nil:
		return nil, jwtErr("subject %s: no bundle for trust domain %q", tok.subject, td.Name())
	case b.TrustDomain() != td:
		return nil, jwtErr("subject %s: the bundle source gave the bundle of %q for trust domain %q", tok.subject, b.TrustDomain().Name(), td.Name())
	}
	key, err := tok.verifySignature(b)
	if err != nil {
		return nil, err
	}
	if err := tok.checkClaims(audience, now); err != nil {
		return nil, err
	}
	svid := &JWTSVID{
		ID:       tok.subject,
		Audience: tok.audience,
		Expiry:   tok.expiry,
		IssuedAt: tok.issuedAt,
		KeyID:    key.KeyID,
		token:    token,
	}
	if err := json.Unmarshal(tok.payload, &svid.Claims); err != nil { // parsed already: cannot fail
		return nil, jwtErr("claims: %s", clip.String(err.Error(), maxEcho))
	}
	return svid, nil
}

// jwtToken is a JWT-SVID parsed, not yet verified.
type jwtToken struct {
	raw      string
	alg      string
	kid      string
	hasKid   bool
	payload  []byte
	subject  spiffeid.ID
	audience []string
	hasAud   bool
	expiry   time.Time // zero: no exp
	hasExp   bool
	issuedAt time.Time
	nbf      time.Time
}

// parseJWTSVID reads token's header and claims, checking the header's
// rules and the subject, the claim that says which bundle verifies it.
func parseJWTSVID(token string) (*jwtToken, error) {
	switch {
	case token == "":
		return nil, jwtErr("empty token")
	case len(token) > MaxJWTSVIDSize:
		return nil, jwtErr("token of %d bytes, more than %d", len(token), MaxJWTSVIDSize)
	case strings.Count(token, ".") != 2:
		return nil, jwtErr("not in JWS Compact Serialization (three base64url parts separated by dots)")
	}
	parts := strings.SplitN(token, ".", 3)
	var decoded [3][]byte
	for i, name := range [...]string{"header", "claims", "signature"} {
		var err error
		if decoded[i], err = base64.RawURLEncoding.Strict().DecodeString(parts[i]); err != nil {
			return nil, jwtErr("%s is not base64url without padding", name)
		}
	}
	tok := &jwtToken{raw: token, payload: decoded[1]}
	if err := tok.parseHeader(decoded[0]); err != nil {
		return nil, err
	}
	if err := tok.parseClaims(); err != nil {
		return nil, err
	}
	return tok, nil
}

// parseHeader reads and checks the JOSE header.
func (t *jwtToken) parseHeader(data []byte) error {
	h, err := jsonObject(data)
	if err != nil {
		return jwtErr("header is not a JSON object: %w", err)
	}
	// alg first: "Validators MUST ensure that the alg header is set to a
	// supported value before processing" (JWT-SVID 4).
	raw, ok := h["alg"]
	if !ok {
		return jwtErr("no alg header")
	}
	if err := json.Unmarshal(raw, &t.alg); err != nil {
		return jwtErr("alg header %s is not a string", clip.String(string(raw), maxEcho))
	}
	if !slices.Contains(jwtAlgorithms, t.alg) {
		return jwtErr("alg %q is not allowed (want one of %s)", clip.String(t.alg, maxEcho), strings.Join(jwtAlgorithms, ", "))
	}
	names := make([]string, 0, len(h))
	for name := range h {
		if !slices.Contains(jwtHeaders, name) {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		return jwtErr("header parameter %q is not allowed (a JWT-SVID has only alg, kid and typ)", clip.String(names[0], maxEcho))
	}
	if raw, ok := h["typ"]; ok {
		var typ string
		if err := json.Unmarshal(raw, &typ); err != nil || typ != "JWT" && typ != "JOSE" {
			return jwtErr("typ header %s is not \"JWT\" or \"JOSE\"", clip.String(string(raw), maxEcho))
		}
	}
	if raw, ok := h["kid"]; ok {
		if err := json.Unmarshal(raw, &t.kid); err != nil || t.kid == "" {
			return jwtErr("kid header %s is not a non-empty string", clip.String(string(raw), maxEcho))
		}
		t.hasKid = true
	}
	return nil
}

// parseClaims reads the registered claims the specification restricts.
func (t *jwtToken) parseClaims() error {
	c, err := jsonObject(t.payload)
	if err != nil {
		return jwtErr("claims are not a JSON object: %w", err)
	}
	raw, ok := c["sub"]
	if !ok {
		return jwtErr("no sub claim")
	}
	var sub string
	if err := json.Unmarshal(raw, &sub); err != nil {
		return jwtErr("sub claim %s is not a string", clip.String(string(raw), maxEcho))
	}
	if t.subject, err = spiffeid.FromString(sub); err != nil {
		return jwtErr("sub claim %q is not a SPIFFE ID: %w", clip.String(sub, maxEcho), err)
	}
	if t.subject.Path() == "" {
		return jwtErr("sub claim %q is a trust domain, not a workload: a JWT-SVID's SPIFFE ID must have a path", clip.String(sub, maxEcho))
	}
	if raw, ok := c["aud"]; ok {
		t.hasAud = true
		var one string
		if isNull(raw) {
			return jwtErr("aud claim null is not a string or an array of strings")
		}
		if err := json.Unmarshal(raw, &one); err == nil {
			t.audience = []string{one}
		} else if t.audience, err = stringArray(raw); err != nil {
			return jwtErr("aud claim %s is not a string or an array of strings", clip.String(string(raw), maxEcho))
		}
	}
	for _, claim := range []struct {
		name    string
		into    *time.Time
		present *bool
	}{{"exp", &t.expiry, &t.hasExp}, {"nbf", &t.nbf, nil}, {"iat", &t.issuedAt, nil}} {
		raw, ok := c[claim.name]
		if !ok {
			continue
		}
		when, err := numericDate(raw)
		if err != nil {
			return jwtErr("%s claim %s: %w", claim.name, clip.String(string(raw), maxEcho), err)
		}
		*claim.into = when
		if claim.present != nil {
			*claim.present = true
		}
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are refused rather
// than overflow a time.Time.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate (RFC 7519 2): seconds since the epoch,
// possibly fractional.
func numericDate(raw json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || isNull(raw) { // null would leave f at 0, 1970
		return time.Time{}, errors.New("not a NumericDate (a number of seconds)")
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// verifySignature verifies the token's signature with the jwt-svid keys of
// b that may have made it, and returns the one that did.
func (t *jwtToken) verifySignature(b *Bundle) (BundleKey, error) {
	td := b.TrustDomain().Name()
	keys := b.JWTKeys()
	if len(keys) == 0 {
		return BundleKey{}, jwtErr("the bundle of trust domain %q has no jwt-svid keys: it trusts no JWT-SVID", td)
	}
	if t.hasKid {
		keys = slices.DeleteFunc(keys, func(k BundleKey) bool { return k.KeyID != t.kid })
		if len(keys) == 0 {
			for _, k := range b.Keys() {
				if k.KeyID == t.kid {
					return BundleKey{}, jwtErr("key %q of trust domain %q is an %s key, not a jwt-svid key", clip.String(t.kid, maxEcho), td, k.Use)
				}
			}
			return BundleKey{}, jwtErr("no jwt-svid key %q in the bundle of trust domain %q", clip.String(t.kid, maxEcho), td)
		}
	}
	fitting := slices.DeleteFunc(keys, func(k BundleKey) bool { return !fits(t.alg, k) })
	if len(fitting) == 0 {
		if t.hasKid {
			return BundleKey{}, jwtErr("jwt-svid key %q of trust domain %q does not fit alg %s", clip.String(t.kid, maxEcho), td, t.alg)
		}
		return BundleKey{}, jwtErr("no jwt-svid key of trust domain %q fits alg %s", td, t.alg)
	}
	jws, err := jose.ParseSignedCompact(t.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(t.alg)})
	if err != nil {
		return BundleKey{}, jwtErr("%s", clip.String(josekey.Message(err), maxEcho))
	}
	for _, k := range fitting {
		payload, err := jws.Verify(k.Key)
		if err != nil {
			continue
		}
		if !bytes.Equal(payload, t.payload) { // the same base64 part, decoded twice
			return BundleKey{}, jwtErr("verified claims differ from the parsed ones")
		}
		return k, nil
	}
	if t.hasKid {
		return BundleKey{}, jwtErr("signature does not verify with jwt-svid key %q of trust domain %q", clip.String(t.kid, maxEcho), td)
	}
	return BundleKey{}, jwtErr("signature verifies with none of the %d jwt-svid keys of trust domain %q that fit alg %s (the token has no kid)", len(fitting), td, t.alg)
}

// fits reports whether k can verify a signature of alg.
func fits(alg string, k BundleKey) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		return ecAlg(key) == alg
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && key.N.BitLen() >= minRSABits
	default:
		return false
	}
}

// ecAlg returns the JWS algorithm of an EC key's curve, or "".
func ecAlg(key *ecdsa.PublicKey) string {
	switch key.Curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	default:
		return ""
	}
}

// checkClaims checks aud, exp, nbf and iat at now.
func (t *jwtToken) checkClaims(audience string, now time.Time) error {
	switch {
	case !t.hasAud:
		return jwtErr("no aud claim (want %q)", clip.String(audience, maxEcho))
	case len(t.audience) == 0:
		return jwtErr("aud claim is empty (want %q)", clip.String(audience, maxEcho))
	case !slices.Contains(t.audience, audience):
		return jwtErr("aud %s does not contain %q", clip.String(quoteAll(t.audience), maxEcho), clip.String(audience, maxEcho))
	case !t.hasExp:
		return jwtErr("no exp claim")
	case !now.Before(t.expiry.Add(JWTSVIDLeeway)):
		return jwtErr("expired at %s (now %s, leeway %s)", formatTime(t.expiry), formatTime(now), JWTSVIDLeeway)
	case !t.nbf.IsZero() && now.Add(JWTSVIDLeeway).Before(t.nbf):
		return jwtErr("not valid before %s (now %s, leeway %s)", formatTime(t.nbf), formatTime(now), JWTSVIDLeeway)
	case !t.issuedAt.IsZero() && now.Add(JWTSVIDLeeway).Before(t.issuedAt):
		return jwtErr("issued in the future, at %s (now %s, leeway %s)", formatTime(t.issuedAt), formatTime(now), JWTSVIDLeeway)
	}
	return nil
}

// stringArray decodes raw, a JSON array of strings (null is none).
func stringArray(raw json.RawMessage) ([]string, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return nil, errors.New("not an array")
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		if isNull(e) {
			return nil, errors.New("null element")
		}
		if err := json.Unmarshal(e, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// isNull reports whether raw is the JSON null, which encoding/json decodes
// into a string or a number as if it were absent.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func quoteAll(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func jwtErr(format string, args ...any) error {
	return fmt.Errorf("identity: jwt-svid: "+format, args...)
}
