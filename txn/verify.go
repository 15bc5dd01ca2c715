package txn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// DefaultLeeway is the clock skew a [Verifier] tolerates unless
// [WithLeeway] says otherwise.
const DefaultLeeway = 5 * time.Second

// maxLeeway bounds [WithLeeway]: more would make short-lived tokens long-lived.
const maxLeeway = time.Minute

// Verifier checks the transaction tokens that calls carry. Build one with
// [NewVerifier]; it is safe for concurrent use.
type Verifier struct {
	bundles     x509bundle.Source
	audience    spiffeid.TrustDomain
	aud         string // audience.IDString()
	minters     spiffeid.Matcher
	leeway      time.Duration
	maxLifetime time.Duration
	cache       *cache       // nil: no cache
	signers     *signerCache // nil: no cache (with the token cache off)
}

// VerifierOption configures a [Verifier].
type VerifierOption interface {
	applyToVerifier(*verifierConfig)
}

type verifierConfig struct {
	leeway      time.Duration
	maxLifetime time.Duration
	cacheSize   int
}

type verifierOptionFunc func(*verifierConfig)

func (f verifierOptionFunc) applyToVerifier(c *verifierConfig) { f(c) }

// WithLeeway sets the clock skew tolerated between the minter's clock and
// the verifier's, from 0 to one minute: a token is accepted until leeway
// after its exp, and with an iat (or nbf) up to leeway in the future. By
// default it is [DefaultLeeway] (5 s): workloads of one trust domain keep
// their clocks with NTP, and every second of leeway lengthens the life of
// a token.
func WithLeeway(d time.Duration) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.leeway = d })
}

// WithMaxLifetime sets the longest lifetime (exp minus iat) of an accepted
// token, more than zero and at most [MaxLifetime]. By default it is
// MaxLifetime (10 minutes), the longest a [Minter] mints.
func WithMaxLifetime(d time.Duration) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.maxLifetime = d })
}

// WithCacheSize sets how many verified tokens the Verifier remembers, so
// that a token presented again (the next hop of the same transaction, a
// stream's next call) costs a SHA-256 of the token and a map lookup rather
// than a certificate chain verification and a signature check; 0 turns the
// cache off, and the cache of verified headers (see the package doc) with
// it. By default it is [DefaultCacheSize] (10,000 tokens: with the x5c
// chain a token is about 1.5 KiB, so some 15-20 MiB when full). An
// entry lives no longer than its token (exp plus the leeway) and its
// signer's certificates; it is reused only while the bundle source hands
// out the same bundle and the minters still match, so a cached token is
// refused exactly when a fresh verification would refuse it.
func WithCacheSize(n int) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.cacheSize = n })
}

// NewVerifier returns a Verifier of the tokens for trust domain audience
// (their aud claim must name it, as a SPIFFE ID: "spiffe://shop.example")
// whose signers chain to bundles and are matched by minters: the workloads
// allowed to mint, e.g. spiffeid.MatchOneOf(gateway), or a matcher that
// asks the policy in force (its txn_issuers), since minters is called on
// every verification, cached ones included.
//
// Verified tokens and signers are cached while bundles hands out the same
// *x509bundle.Bundle they were verified against: a source that replaces its
// bundle on an update (x509bundle.Set.Add, the Workload API sources, the
// certs package's) has them verified again at once. A bundle edited in place
// (RemoveX509Authority on a *x509bundle.Bundle passed as the source) is not
// seen until the cached tokens and signer certificates expire: replace the
// bundle instead, or use WithCacheSize(0).
func NewVerifier(bundles x509bundle.Source, audience spiffeid.TrustDomain, minters spiffeid.Matcher, opts ...VerifierOption) (*Verifier, error) {
	switch {
	case bundles == nil:
		return nil, errors.New("txn: verifier needs a trust bundle source")
	case audience.IsZero():
		return nil, errors.New("txn: verifier needs an audience (the trust domain tokens must be for)")
	case minters == nil:
		return nil, errors.New("txn: verifier needs the allowed minters (e.g. spiffeid.MatchOneOf(...))")
	}
	cfg := verifierConfig{leeway: DefaultLeeway, maxLifetime: MaxLifetime, cacheSize: DefaultCacheSize}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("txn: verifier: nil option")
		}
		o.applyToVerifier(&cfg)
	}
	switch {
	case cfg.leeway < 0 || cfg.leeway > maxLeeway:
		return nil, fmt.Errorf("txn: verifier: leeway %s must be from 0 to %s", cfg.leeway, maxLeeway)
	case cfg.maxLifetime <= 0 || cfg.maxLifetime > MaxLifetime:
		return nil, fmt.Errorf("txn: verifier: maximum lifetime %s must be more than 0 and at most %s", cfg.maxLifetime, MaxLifetime)
	case cfg.cacheSize < 0:
		return nil, fmt.Errorf("txn: verifier: cache size %d must not be negative", cfg.cacheSize)
	}
	v := &Verifier{
		bundles:     bundles,
		audience:    audience,
		aud:         audience.IDString(),
		minters:     minters,
		leeway:      cfg.leeway,
		maxLifetime: cfg.maxLifetime,
	}
	if cfg.cacheSize > 0 {
		v.cache = newCache(cfg.cacheSize)
		v.signers = newSignerCache()
	}
	return v, nil
}

// Verify checks raw, a compact transaction token, as of now (the zero time
// means time.Now()), and returns it verified. It refuses, with an error
// that matches one of the sentinels (see [ErrMalformed]):
//
//   - a token longer than [MaxSize], before parsing it ([ErrTooLarge]);
//   - a token whose typ header is not exactly [TokenType] ([ErrType]);
//   - an alg other than ES256, EdDSA or RS256, or one that does not fit
//     the key of the signer's certificate ([ErrAlgorithm]);
//   - an x5c chain that does not verify, at now, against the bundle of its
//     leaf's trust domain under the X.509-SVID rules of
//     [identity.VerifyChains] ([ErrUntrusted]);
//   - a signature that does not verify with the leaf's key ([ErrSignature]);
//   - an iss or req_wl claim that is not the leaf's SPIFFE ID, or a leaf
//     that minters does not match ([ErrNotMinter]);
//   - an aud claim that does not name the trust domain ([ErrAudience]);
//   - an exp in the past ([ErrExpired]), an iat or nbf in the future
//     ([ErrNotYetValid]), both with the leeway, or an exp further after
//     iat than the maximum lifetime ([ErrLifetime]);
//   - a token without iat, exp, txn, scope, a SPIFFE ID as sub, or with
//     tctx or rctx fields of the wrong form, or a crit header
//     ([ErrMalformed]).
//
// The claims are looked at only once the signature is good. Claims the
// package does not know are ignored.
func (v *Verifier) Verify(raw string, now time.Time) (*Token, error) {
	if len(raw) > MaxSize {
		return nil, refuse(ErrTooLarge, "%d bytes, more than %d", len(raw), MaxSize)
	}
	if raw == "" {
		return nil, refuse(ErrMalformed, "empty token")
	}
	if now.IsZero() {
		now = time.Now()
	}
	if v.cache != nil {
		if e := v.cache.get(raw); e != nil {
			if v.reusable(e, now) {
				return e.tok, nil
			}
			// Verify again: the result is what it would have been without
			// the cache, and so is the error that says why.
			v.cache.remove(e)
		}
	}
	tok, e, err := v.verify(raw, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(e, now)
	}
	return tok, nil
}

// reusable reports whether a cached entry may be returned at now without
// verifying its token again: its times still hold, its chain has not
// expired, its bundle is still the one in force and its minter is still
// allowed.
func (v *Verifier) reusable(e *entry, now time.Time) bool {
	if now.After(e.until) || v.checkTimes(e.tok.times, now) != nil {
		return false
	}
	bundle, err := v.bundles.GetX509BundleForTrustDomain(e.tok.minter.TrustDomain())
	if err != nil || bundle != e.bundle {
		return false
	}
	return v.minters(e.tok.minter) == nil
}

// header is the JOSE header of a token, as far as the Verifier reads it
// before go-jose does.
type header struct {
	Alg  string
	Typ  json.RawMessage // nil: none
	X5c  []string
	Crit bool // a crit parameter is present
}

// verify is Verify without the token cache.
func (v *Verifier) verify(raw string, now time.Time) (*Token, *entry, error) {
	sg, err := v.signer(raw, now)
	if err != nil {
		return nil, nil, err
	}
	signer := sg.id
	// parseHeader (on a signer cache miss) has checked the form; a cached
	// header says nothing of the rest of this token.
	headerPart, rest, _ := strings.Cut(raw, ".")
	payloadPart, signaturePart, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(signaturePart, ".") {
		return nil, nil, refuse(ErrMalformed, "not a compact JWS (three base64url parts separated by dots)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(payloadPart)
	if err != nil {
		return nil, nil, refuse(ErrMalformed, "claims part is not base64url: %w", err)
	}
	signature, err := base64.RawURLEncoding.DecodeString(signaturePart)
	if err != nil {
		return nil, nil, refuse(ErrMalformed, "signature is not base64url: %w", err)
	}
	if !verifySignature(sg.alg, sg.key, raw[:len(headerPart)+1+len(payloadPart)], signature) {
		return nil, nil, refuse(ErrSignature, "signature does not verify with the key of signer %s", signer)
	}
	var c claims
	if err := josejson.Unmarshal(payload, &c); err != nil { // as go-jose's jwt reads claims: names match exactly
		return nil, nil, refuse(ErrMalformed, "claims: %s", clip.String(josekey.Message(err), maxEcho))
	}

	// The signature is good: the claims are the signer's.
	minter := signer.String()
	switch {
	case c.Issuer != minter:
		return nil, nil, refuse(ErrNotMinter, "iss %q is not the signer %s", clip.String(c.Issuer, maxEcho), minter)
	case c.RequestingWorkload != minter:
		return nil, nil, refuse(ErrNotMinter, "req_wl %q is not the signer %s", clip.String(c.RequestingWorkload, maxEcho), minter)
	}
	if err := v.minters(signer); err != nil {
		return nil, nil, refuse(ErrNotMinter, "%s may not mint transaction tokens", minter)
	}
	switch {
	case len(c.Audience) == 0:
		return nil, nil, refuse(ErrAudience, "no aud claim (want %q)", v.aud)
	case !c.Audience.Contains(v.aud):
		return nil, nil, refuse(ErrAudience, "token is for %q, not %q", clip.String(strings.Join(c.Audience, ", "), maxEcho), v.aud)
	case c.IssuedAt == nil:
		return nil, nil, refuse(ErrMalformed, "no iat claim")
	case c.Expiry == nil:
		return nil, nil, refuse(ErrMalformed, "no exp claim")
	}
	times := jwt.Claims{IssuedAt: c.IssuedAt, Expiry: c.Expiry, NotBefore: c.NotBefore}
	if err := v.checkTimes(times, now); err != nil {
		return nil, nil, err
	}
	iat, exp := c.IssuedAt.Time(), c.Expiry.Time()
	switch {
	case exp.Before(iat):
		return nil, nil, refuse(ErrMalformed, "exp %s is before iat %s", formatTime(exp), formatTime(iat))
	case exp.Sub(iat) > v.maxLifetime:
		return nil, nil, refuse(ErrLifetime, "exp %s is %s after iat %s (at most %s)", formatTime(exp), exp.Sub(iat), formatTime(iat), v.maxLifetime)
	}

	tok := &Token{raw: raw, digest: sha256.Sum256([]byte(raw)), minter: signer, times: times}
	if tok.subject, err = parseSubject(c.Subject); err != nil {
		return nil, nil, err
	}
	switch {
	case c.Txn == "":
		return nil, nil, refuse(ErrMalformed, "no txn claim")
	case len(c.Txn) > maxEcho:
		return nil, nil, refuse(ErrMalformed, "txn claim of %d bytes is longer than %d", len(c.Txn), maxEcho)
	case c.Scope == "":
		return nil, nil, refuse(ErrMalformed, "no scope claim")
	}
	tok.id, tok.scope = c.Txn, c.Scope
	if c.TransactionContext != nil {
		tok.method = c.TransactionContext.Method
	}
	if c.RequestContext != nil && c.RequestContext.ReqIP != "" {
		if tok.clientIP, err = netip.ParseAddr(c.RequestContext.ReqIP); err != nil {
			return nil, nil, refuse(ErrMalformed, "rctx req_ip %q is not an IP address", clip.String(c.RequestContext.ReqIP, maxEcho))
		}
	}
	// reusable compares the bundle with the source's on every cache hit.
	e := &entry{tok: tok, until: earliest(exp.Add(v.leeway), sg.until), bundle: sg.bundle}
	return tok, e, nil
}

// checkTimes checks exp, nbf and iat at now, with the leeway.
func (v *Verifier) checkTimes(times jwt.Claims, now time.Time) error {
	err := times.ValidateWithLeeway(jwt.Expected{Time: now}, v.leeway)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrExpired):
		return refuse(ErrExpired, "exp %s is more than %s before %s", formatTime(times.Expiry.Time()), v.leeway, formatTime(now))
	case errors.Is(err, jwt.ErrNotValidYet):
		return refuse(ErrNotYetValid, "nbf %s is more than %s after %s", formatTime(times.NotBefore.Time()), v.leeway, formatTime(now))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return refuse(ErrNotYetValid, "iat %s is more than %s after %s", formatTime(times.IssuedAt.Time()), v.leeway, formatTime(now))
	default:
		return refuse(ErrMalformed, "times: %w", err)
	}
}

// parseHeader decodes the JOSE header of a compact JWS.
func parseHeader(raw string) (header, error) {
	encoded, rest, ok := strings.Cut(raw, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return header{}, refuse(ErrMalformed, "not a compact JWS (three base64url parts separated by dots)")
	}
	payload, signature, _ := strings.Cut(rest, ".")
	data, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return header{}, refuse(ErrMalformed, "header is not base64url: %w", err)
	}
	// go-jose would say "illegal base64 data" without saying where.
	for _, part := range [...]struct{ name, data string }{{"claims part", payload}, {"signature", signature}} {
		if _, err := base64.RawURLEncoding.DecodeString(part.data); err != nil {
			return header{}, refuse(ErrMalformed, "%s is not base64url: %w", part.name, err)
		}
	}
	// Into a map, not a struct: header parameter names are case-sensitive
	// (encoding/json would fill Typ from "TYP"), and duplicates resolve as
	// they do for go-jose, which reads the header into a map too.
	var params map[string]json.RawMessage
	if err := json.Unmarshal(data, &params); err != nil {
		return header{}, refuse(ErrMalformed, "header is not a JSON object: %s", clip.String(err.Error(), maxEcho))
	}
	h := header{Typ: params["typ"]}
	_, h.Crit = params["crit"]
	if alg, ok := params["alg"]; ok {
		if err := json.Unmarshal(alg, &h.Alg); err != nil {
			return header{}, refuse(ErrMalformed, "alg header %s is not a string", clip.String(string(alg), maxEcho))
		}
	}
	if x5c, ok := params["x5c"]; ok {
		if err := json.Unmarshal(x5c, &h.X5c); err != nil {
			return header{}, refuse(ErrMalformed, "x5c header is not an array of strings")
		}
	}
	return h, nil
}

// checkType fails unless typ, the raw typ header, is exactly TokenType.
func checkType(typ json.RawMessage) error {
	if typ == nil {
		return refuse(ErrType, "no typ header (want %q)", TokenType)
	}
	var s string
	if err := json.Unmarshal(typ, &s); err != nil {
		return refuse(ErrType, "typ %s is not a string (want %q)", clip.String(string(typ), maxEcho), TokenType)
	}
	if s != TokenType {
		return refuse(ErrType, "typ %q (want %q)", clip.String(s, maxEcho), TokenType)
	}
	return nil
}

func accepted(alg jose.SignatureAlgorithm) bool {
	for _, a := range algorithms {
		if alg == a {
			return true
		}
	}
	return false
}

// parseChain decodes the x5c header: the signer's certificate chain, leaf
// first, each certificate base64 (not base64url) DER (RFC 7515, 4.1.6).
func parseChain(x5c []string) ([]*x509.Certificate, error) {
	if len(x5c) == 0 {
		return nil, refuse(ErrMalformed, "no x5c header (the signer's certificate chain)")
	}
	chain := make([]*x509.Certificate, len(x5c))
	for i, enc := range x5c {
		der, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, refuse(ErrMalformed, "x5c certificate %d is not base64: %w", i, err)
		}
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, refuse(ErrMalformed, "x5c certificate %d: %s", i, clip.String(err.Error(), maxEcho))
		}
	}
	return chain, nil
}

// parseSubject reads the sub claim: a SPIFFE ID in its canonical form.
func parseSubject(sub string) (spiffeid.ID, error) {
	if sub == "" {
		return spiffeid.ID{}, refuse(ErrMalformed, "no sub claim")
	}
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return spiffeid.ID{}, refuse(ErrMalformed, "sub %q is not a SPIFFE ID: %w", clip.String(sub, maxEcho), err)
	}
	return id, nil
}
