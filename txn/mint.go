package txn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// Minter mints transaction tokens for the calls that enter the trust
// domain at an edge workload. It signs with the workload's own X.509-SVID,
// read from its source on every Mint (so rotation needs nothing), and puts
// the SVID's certificate chain in the x5c header, so that verifiers need no
// key beyond the SPIFFE trust bundle they already have. Build one with
// [NewMinter]; it is safe for concurrent use.
type Minter struct {
	svids    x509svid.Source
	audience spiffeid.TrustDomain
	aud      string // audience.IDString()
	lifetime time.Duration
	current  atomic.Pointer[signing] // the signer of the last SVID seen
}

// MinterOption configures a [Minter].
type MinterOption interface {
	applyToMinter(*minterConfig)
}

type minterConfig struct {
	lifetime time.Duration
}

type minterOptionFunc func(*minterConfig)

func (f minterOptionFunc) applyToMinter(c *minterConfig) { f(c) }

// WithLifetime sets how long a minted token is valid, from its iat to its
// exp: more than zero and at most [MaxLifetime]. By default it is
// [DefaultLifetime] (60 s). A token never outlives the deadline of the call
// it is minted for, nor the minter's SVID, whatever the lifetime.
func WithLifetime(d time.Duration) MinterOption {
	return minterOptionFunc(func(c *minterConfig) { c.lifetime = d })
}

// NewMinter returns a Minter that signs with the SVID of svids and mints
// tokens for the trust domain audience (their aud claim, as a SPIFFE ID:
// "spiffe://shop.example"). The SVID must be in that trust domain and its
// key must be ECDSA P-256 (the token is signed ES256), Ed25519 (EdDSA) or
// RSA of at least 2048 bits (RS256); any other key is refused here, and so
// is an SVID whose private key does not match its certificate.
func NewMinter(svids x509svid.Source, audience spiffeid.TrustDomain, opts ...MinterOption) (*Minter, error) {
	switch {
	case svids == nil:
		return nil, errors.New("txn: minter needs an SVID source")
	case audience.IsZero():
		return nil, errors.New("txn: minter needs an audience (the trust domain its tokens are for)")
	}
	cfg := minterConfig{lifetime: DefaultLifetime}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("txn: minter: nil option")
		}
		o.applyToMinter(&cfg)
	}
	if cfg.lifetime <= 0 || cfg.lifetime > MaxLifetime {
		return nil, fmt.Errorf("txn: minter: lifetime %s must be more than 0 and at most %s", cfg.lifetime, MaxLifetime)
	}
	m := &Minter{svids: svids, audience: audience, aud: audience.IDString(), lifetime: cfg.lifetime}
	s, err := m.signing()
	if err != nil {
		return nil, fmt.Errorf("txn: minter: %w", err)
	}
	if !s.id.MemberOf(audience) {
		return nil, fmt.Errorf("txn: minter: SVID %s is not in trust domain %s, which the tokens are for", s.id, audience)
	}
	return m, nil
}

// Request is what a [Minter] mints a token from: the verified facts of one
// call that enters the trust domain.
type Request struct {
	// Subject is who the transaction is for, the sub claim: the SPIFFE ID
	// of the edge's verified caller, or the subject of a verified
	// certificate-bound access token it presented (tokens.Claims.Subject,
	// which the tokens package requires to be the caller's SPIFFE ID).
	// Required. A subject from elsewhere (an OAuth user id) must be mapped
	// to a SPIFFE ID by the edge, e.g. spiffe://TD/user/NAME, so that
	// policy can match it like any other identity.
	Subject spiffeid.ID

	// Method is the RPC the transaction enters by, "/package.Service/Method"
	// (the tctx claim's method). Required.
	Method string

	// Scope is the purpose of the transaction, the scope claim (space
	// separated strings). By default it is Method, the narrowest purpose
	// the edge knows.
	Scope string

	// ClientIP is the address of the edge's caller, the rctx claim's
	// req_ip. By default (the zero Addr) the token has no rctx. The draft
	// counts it as personal information in some jurisdictions: leave it
	// out unless downstream services need it.
	ClientIP netip.Addr

	// Now is the issue time. By default (the zero time) it is time.Now().
	Now time.Time
}

// maxMethod bounds the length of a method or a scope in a token.
const maxMethod = 512

// Mint returns a new token for r, signed with the minter's current SVID:
// header typ [TokenType], alg for the SVID's key, kid the RFC 7638
// thumbprint of the key and x5c the SVID's chain; claims iss and req_wl
// the SVID's SPIFFE ID, sub r.Subject, aud the trust domain, iat now, exp
// now plus the lifetime but never past ctx's deadline or the SVID's expiry,
// txn the trace id of the span in ctx (when there is a valid one) or 128
// random bits in hexadecimal, scope, tctx {"method": r.Method} and, with
// r.ClientIP, rctx {"req_ip": ...}. The times are whole seconds, as in
// every JWT.
//
// Mint fails when ctx is already done, when r lacks a subject or a method,
// or when the SVID cannot sign (it expired, or a rotation brought a key
// of another kind).
func (m *Minter) Mint(ctx context.Context, r Request) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, mintErr("%w", err)
	}
	if r.Subject.IsZero() {
		return nil, mintErr("no subject")
	}
	if err := checkText("method", r.Method); err != nil {
		return nil, mintErr("%w", err)
	}
	if r.Method[0] != '/' {
		return nil, mintErr("method %q is not a /package.Service/Method path", clip.String(r.Method, maxEcho))
	}
	scope := r.Scope
	if scope == "" {
		scope = r.Method
	} else if err := checkText("scope", scope); err != nil {
		return nil, mintErr("%w", err)
	}
	s, err := m.signing()
	if err != nil {
		return nil, mintErr("%w", err)
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(s.notAfter) {
		return nil, mintErr("own SVID %s expired at %s", s.id, formatTime(s.notAfter))
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(m.lifetime)
	if deadline, ok := ctx.Deadline(); ok {
		if !deadline.After(now) {
			return nil, mintErr("%w", context.DeadlineExceeded)
		}
		exp = earliest(exp, deadline.Truncate(time.Second))
	}
	exp = earliest(exp, s.notAfter.Truncate(time.Second))

	c := claims{
		Claims: jwt.Claims{
			Issuer:   s.idString,
			Subject:  r.Subject.String(),
			Audience: jwt.Audience{m.aud},
			IssuedAt: jwt.NewNumericDate(iat),
			Expiry:   jwt.NewNumericDate(exp),
		},
		Txn:                transactionID(ctx),
		Scope:              scope,
		RequestingWorkload: s.idString,
		TransactionContext: &transactionContext{Method: r.Method},
	}
	var clientIP netip.Addr
	if r.ClientIP.IsValid() {
		clientIP = r.ClientIP.Unmap().WithZone("")
		c.RequestContext = &requestContext{ReqIP: clientIP.String()}
	}
	// Marshalled here and signed as is: go-jose's JWT builder would
	// marshal, unmarshal and marshal the claims again.
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, mintErr("claims: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return nil, mintErr("sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return nil, mintErr("sign: %w", err)
	}
	if len(raw) > MaxSize {
		return nil, mintErr("the token is %d bytes, more than the %d a verifier reads (is the SVID's certificate chain that long?)", len(raw), MaxSize)
	}
	return &Token{
		raw:      raw,
		digest:   sha256.Sum256([]byte(raw)),
		subject:  r.Subject,
		minter:   s.id,
		id:       c.Txn,
		method:   r.Method,
		scope:    scope,
		clientIP: clientIP,
		times:    jwt.Claims{IssuedAt: c.IssuedAt, Expiry: c.Expiry},
	}, nil
}

// Lifetime returns how long the tokens m mints are valid (when no deadline
// is sooner).
func (m *Minter) Lifetime() time.Duration { return m.lifetime }

// signing is what the Minter signs with for one SVID.
type signing struct {
	svid     *x509svid.SVID
	id       spiffeid.ID
	idString string
	notAfter time.Time
	signer   jose.Signer
}

// signing returns the signer of the current SVID, building a new one when
// the source hands out another SVID than last time (a rotation).
func (m *Minter) signing() (*signing, error) {
	svid, err := m.svids.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("read own SVID: %w", err)
	}
	if s := m.current.Load(); s != nil && s.svid == svid {
		return s, nil
	}
	s, err := newSigning(svid)
	if err != nil {
		return nil, err
	}
	m.current.Store(s)
	return s, nil
}

func newSigning(svid *x509svid.SVID) (*signing, error) {
	if svid == nil || len(svid.Certificates) == 0 {
		return nil, errors.New("own SVID has no certificate")
	}
	if svid.PrivateKey == nil {
		return nil, fmt.Errorf("own SVID %s has no private key", svid.ID)
	}
	leaf := svid.Certificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("own SVID: %w", err)
	}
	if id != svid.ID {
		return nil, fmt.Errorf("own SVID says it is %s, but its certificate is %s", svid.ID, id)
	}
	alg, err := algFor(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("own SVID %s cannot sign transaction tokens: %w", id, err)
	}
	if pub, ok := svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("own SVID %s: private key does not match its certificate", id)
	}
	x5c := make([]string, len(svid.Certificates))
	for i, cert := range svid.Certificates {
		x5c[i] = base64.StdEncoding.EncodeToString(cert.Raw)
	}
	kid, err := josekey.ID(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("own SVID %s: key thumbprint: %w", id, err)
	}
	opts := (&jose.SignerOptions{}).
		WithType(TokenType).
		WithHeader(jose.HeaderKey("kid"), kid).
		WithHeader(jose.HeaderKey("x5c"), x5c)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signingKey(svid.PrivateKey)}, opts)
	if err != nil {
		return nil, fmt.Errorf("own SVID %s: %w", id, err)
	}
	return &signing{svid: svid, id: id, idString: id.String(), notAfter: leaf.NotAfter, signer: signer}, nil
}

// signingKey returns key in the form go-jose signs with: the key itself
// for the standard library's types, an opaque signer for any other
// crypto.Signer (a key in an HSM or a KMS).
func signingKey(key crypto.Signer) any {
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		return key
	default:
		return cryptosigner.Opaque(key)
	}
}

// transactionID returns the txn of a token minted in ctx: the trace id of
// its span when there is a valid one, so that the token and the trace name
// the transaction alike, else 128 random bits.
func transactionID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// checkText fails unless s, a method or a scope, is non-empty, bounded and
// printable.
func checkText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("no %s", what)
	case len(s) > maxMethod:
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), maxMethod)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, clip.String(s, maxEcho))
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %q holds a control character", what, clip.String(s, maxEcho))
		}
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
