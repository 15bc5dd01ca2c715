package identity

import (
	"context"
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/idkey"
)

// Principal is an authenticated peer: the SPIFFE ID read from its verified
// X.509-SVID and the leaf certificate itself. The zero value is no one.
type Principal struct {
	// ID is the peer's SPIFFE ID.
	ID spiffeid.ID
	// Leaf is the peer's verified leaf certificate. It is shared, not copied:
	// callers must not modify it.
	Leaf *x509.Certificate
}

// IsZero reports whether p is the zero Principal (no authenticated peer).
func (p Principal) IsZero() bool { return p.ID.IsZero() }

// String returns the SPIFFE ID, or "<none>" for the zero Principal.
func (p Principal) String() string {
	if p.IsZero() {
		return "<none>"
	}
	return p.ID.String()
}

// FromContext returns the Principal that the mesh's interceptors put in ctx
// for the current call, and whether there was one. Handlers behind a
// trustmesh server always find one: a call without a verified peer never
// reaches them.
//
// Only trustmesh's own interceptors can put a Principal in a context, each
// from a peer whose chain the mesh verified as an X.509-SVID at the
// handshake; there is deliberately no NewContext, so no code (a header
// parser, a test shortcut) can make FromContext return an identity that
// was not proven. To test a handler, call it through a mesh server over
// TLS on loopback, with a development CA from certs.NewCA (the examples/
// modules of the trustmesh repository show how).
func FromContext(ctx context.Context) (Principal, bool) {
	var p *Principal
	switch v := ctx.Value(idkey.Key{}).(type) {
	case *Principal: // a call's caller
		p = v
	case verifiedConn: // the connection's verified peer (the HTTP layer)
		p = v.VerifiedPeer()
	}
	if p == nil || p.IsZero() {
		return Principal{}, false
	}
	return *p, true
}

// verifiedConn is what the mesh's HTTP servers keep in each connection's
// context under the identity key: the connection, whose handshake sets
// the verified peer (nil until then). Only trustmesh's internal packages
// can use the key.
type verifiedConn interface{ VerifiedPeer() *Principal }
