package txn

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TokenType is the typ header of a transaction token (draft section
// "JWT Header"). A [Verifier] accepts exactly this value.
const TokenType = "txntoken+jwt"

// MetadataKey is the gRPC metadata key a transaction token travels in
// (gRPC metadata keys are lowercase). It is the HTTP header [HeaderName]:
// a gRPC request over HTTP/2 carries it under that name, so Connect and
// grpc-go peers understand each other.
const MetadataKey = "txn-token"

// HeaderName is the HTTP header a transaction token travels in (draft
// section "Txn-Token HTTP Header"): exactly one token per request, never in
// the Authorization header, which stays free for access tokens.
const HeaderName = "Txn-Token"

// MaxSize is the length, in bytes, of the longest token a [Verifier]
// reads; a longer one is refused before it is parsed, and a [Minter] does
// not produce one.
const MaxSize = 8 << 10

// DefaultLifetime is how long a token minted by a [Minter] is valid unless
// [WithLifetime] says otherwise (and unless the call's deadline is sooner).
const DefaultLifetime = 60 * time.Second

// MaxLifetime is the longest lifetime (exp minus iat) a [Minter] gives a
// token and a [Verifier] accepts by default: transaction tokens are
// short-lived, "on the order of minutes or less".
const MaxLifetime = 10 * time.Minute

// Token is a transaction token that a [Verifier] verified or a [Minter]
// minted. It is immutable, so a *Token can be shared (the verifier's cache
// hands the same one to every call that presents the same token), and it
// can only be made by verifying or minting: a Token in a context is proof
// of who the transaction is for. The zero Token is no token.
//
// Its String form and its slog value name the subject, the transaction id,
// the minter and the method, never the token itself: a complete token is
// a bearer credential for its short life and must not be logged (draft
// section "Logging"). Use [Token.Raw] only to forward it.
type Token struct {
	raw      string
	digest   [sha256.Size]byte
	subject  spiffeid.ID
	minter   spiffeid.ID
	id       string
	method   string
	scope    string
	clientIP netip.Addr
	times    jwt.Claims // IssuedAt, Expiry and NotBefore only
}

// IsZero reports whether t is nil or the zero Token.
func (t *Token) IsZero() bool { return t == nil || t.raw == "" }

// Raw returns the token in its compact form, as received or minted: what a
// client forwards, unchanged, on every call it makes for the transaction.
func (t *Token) Raw() string { return t.raw }

// Subject returns who the transaction is for: the sub claim, a SPIFFE ID
// (the edge caller's, or the subject of the access token it presented).
func (t *Token) Subject() spiffeid.ID { return t.subject }

// Minter returns the SPIFFE ID of the workload that minted and signed the
// token: its iss and req_wl claims, which a Verifier checked are both the
// SPIFFE ID of the x5c certificate that verifies the signature.
func (t *Token) Minter() spiffeid.ID { return t.minter }

// ID returns the transaction's unique identifier, the txn claim: the trace
// id at the edge when tracing is on, else 32 random hexadecimal digits.
func (t *Token) ID() string { return t.id }

// Method returns the method the transaction entered the trust domain by,
// e.g. "/shop.gateway.v1.StorefrontService/PlaceOrder": the method field of
// the tctx claim, or "" when the token has none (tctx is optional to
// verifiers).
func (t *Token) Method() string { return t.method }

// Scope returns the scope claim: the purpose of the transaction. A
// [Minter] makes it the method unless [Request.Scope] says otherwise.
func (t *Token) Scope() string { return t.scope }

// ClientIP returns the IP address of the edge's caller (the req_ip field
// of the rctx claim), or the zero Addr when the token has none.
func (t *Token) ClientIP() netip.Addr { return t.clientIP }

// IssuedAt returns the iat claim.
func (t *Token) IssuedAt() time.Time { return t.times.IssuedAt.Time() }

// Expiry returns the exp claim.
func (t *Token) Expiry() time.Time { return t.times.Expiry.Time() }

// Digest returns the hexadecimal SHA-256 digest of the compact token:
// what may be logged to correlate calls that carried the same token (draft
// section "Logging"), and what the verifier's cache is keyed by.
func (t *Token) Digest() string { return hex.EncodeToString(t.digest[:]) }

// String describes t without its compact form, e.g.
// `txn 4bf92f3577b34da6a3ce929d0e0e4736 for spiffe://shop.example/user/alice
// by spiffe://shop.example/ns/shop/sa/gateway via /shop.gateway.v1.StorefrontService/PlaceOrder`.
func (t *Token) String() string {
	if t.IsZero() {
		return "<no transaction token>"
	}
	method := t.method
	if method == "" {
		method = "<unknown method>"
	}
	return fmt.Sprintf("txn %s for %s by %s via %s", t.id, t.subject, t.minter, method)
}

// GoString is String, so that %#v does not print the compact token either.
func (t *Token) GoString() string { return t.String() }

// LogValue makes a Token log as a group of subject, txn, minter, method and
// exp, never the compact token.
func (t *Token) LogValue() slog.Value {
	if t.IsZero() {
		return slog.GroupValue()
	}
	return slog.GroupValue(
		slog.String("subject", t.subject.String()),
		slog.String("txn", t.id),
		slog.String("minter", t.minter.String()),
		slog.String("method", t.method),
		slog.Time("exp", t.Expiry()),
	)
}
