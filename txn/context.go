package txn

import (
	"context"
	"strings"
)

type ctxKey struct{}

// NewContext returns a copy of ctx that carries t, the verified (or, at the
// edge, freshly minted) transaction token of the call being served, for its
// handler ([FromContext]) and for the mesh clients that forward it on the
// calls the handler makes ([RawFromContext]). A nil or zero t leaves ctx as
// it is.
//
// A Token can only be made by a [Verifier] or a [Minter], so whatever
// FromContext finds was verified or minted here: code that did neither has
// nothing to put in.
func NewContext(ctx context.Context, t *Token) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the transaction token of the call ctx belongs to,
// and whether there is one.
func FromContext(ctx context.Context) (*Token, bool) {
	t, ok := ctx.Value(ctxKey{}).(*Token)
	return t, ok && !t.IsZero()
}

// RawFromContext returns the compact form of the transaction token in ctx,
// and whether there is one: what a client puts, unchanged, in the
// [MetadataKey] metadata (grpc-go) or the [HeaderName] header (Connect,
// HTTP) of an outgoing call made in ctx. A client forwards only this: it
// never mints, and never sends a token it did not receive verified.
func RawFromContext(ctx context.Context) (string, bool) {
	t, ok := FromContext(ctx)
	if !ok {
		return "", false
	}
	return t.raw, true
}

// FromHeader returns the token carried by values, the values of a call's
// [MetadataKey] metadata or [HeaderName] header: "" and no error when there
// are none (a call that carries no token), the token when there is exactly
// one, and an [ErrMalformed] error for several or an empty one (the draft
// allows exactly one token per request). The token is not verified here.
func FromHeader(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", refuse(ErrMalformed, "%d %s headers (want exactly one token)", len(values), MetadataKey)
	}
	raw := strings.TrimSpace(values[0])
	if raw == "" {
		return "", refuse(ErrMalformed, "empty %s header", MetadataKey)
	}
	return raw, nil
}
