package txn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trustmesh/trustmesh/internal/clip"
)

// The reasons a [Verifier] refuses a token. Every error Verify returns
// matches exactly one of them with errors.Is; its text starts with the
// sentinel's and goes on, after a colon, with what exactly is wrong, e.g.
// "txn: token expired: exp 2026-01-02T03:04:05Z is more than 5s before
// 2026-01-02T03:05:00Z".
var (
	// ErrTooLarge is a token longer than [MaxSize] bytes, refused before it
	// is parsed.
	ErrTooLarge = errors.New("txn: token too large")
	// ErrMalformed is a token that is not a compact JWS of a JSON claims
	// set, or that lacks a claim the draft requires (sub, txn, scope, iat,
	// exp, ...) or carries one of the wrong form.
	ErrMalformed = errors.New("txn: malformed token")
	// ErrType is a token whose typ header is not exactly [TokenType]: some
	// other JWT, such as an access token, is not a transaction token.
	ErrType = errors.New("txn: not a transaction token")
	// ErrAlgorithm is a token signed with an algorithm other than ES256,
	// EdDSA or RS256 ("none" and HMACs included), or with one that does not
	// fit the key of the signer's certificate.
	ErrAlgorithm = errors.New("txn: signature algorithm not accepted")
	// ErrUntrusted is a token whose x5c certificate chain does not verify
	// against the trust bundle under the X.509-SVID rules.
	ErrUntrusted = errors.New("txn: signer not trusted")
	// ErrSignature is a token whose signature does not verify with the key
	// of the certificate in its x5c header.
	ErrSignature = errors.New("txn: bad signature")
	// ErrNotMinter is a token whose signer is not one of the allowed
	// minters, or whose iss or req_wl claim is not its signer.
	ErrNotMinter = errors.New("txn: signer not a minter")
	// ErrAudience is a token whose aud claim does not name the verifier's
	// trust domain.
	ErrAudience = errors.New("txn: wrong audience")
	// ErrExpired is a token past its exp (beyond the leeway).
	ErrExpired = errors.New("txn: token expired")
	// ErrNotYetValid is a token issued (iat) or valid (nbf) only in the
	// future (beyond the leeway).
	ErrNotYetValid = errors.New("txn: token not yet valid")
	// ErrLifetime is a token whose exp is further after its iat than the
	// verifier's maximum lifetime: transaction tokens are short-lived.
	ErrLifetime = errors.New("txn: token lifetime too long")
)

// refusal is an error of Verify: one of the sentinels above, a detail,
// and possibly the error that caused it.
type refusal struct {
	kind   error
	detail string
	cause  error // may be nil
}

func (e *refusal) Error() string { return e.kind.Error() + ": " + e.detail }

func (e *refusal) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// refuse returns a refusal of kind whose detail is formatted from format
// and args. A %w verb names the cause.
func refuse(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &refusal{kind: kind, detail: oneLine(err.Error()), cause: errors.Unwrap(err)}
}

// maxEcho bounds how much of a string read from a token goes into an
// error: a token may come from anyone, and errors reach callers and logs.
// Such a string is cut with [clip.String] to maxEcho bytes on a rune
// boundary and marked "..." when longer.
const maxEcho = 128

// maxDetail bounds the detail of a refusal, on one line.
const maxDetail = 512

// oneLine keeps an error detail on one line and bounded.
func oneLine(s string) string {
	return clip.String(strings.ReplaceAll(s, "\n", " "), maxDetail)
}

func mintErr(format string, args ...any) error {
	return fmt.Errorf("txn: mint: "+format, args...)
}
