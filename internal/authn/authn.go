package authn

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/idkey"
)

// AuthInfo is the credentials.AuthInfo of a gRPC connection whose peer the
// mesh verified at the handshake. The mesh's credentials hand out a
// *AuthInfo, one per connection, so that a call reads its peer with a
// pointer type assertion (no copy of the TLS state) and every call of the
// connection shares one Principal.
type AuthInfo struct {
	credentials.TLSInfo
	// Principal is the verified peer; never the zero value.
	Principal identity.Principal
}

// GetTLSInfo returns the connection's plain TLS information, for code that
// expects grpc-go's credentials.TLSInfo (such as grpc-go's authz package).
func (a AuthInfo) GetTLSInfo() credentials.TLSInfo { return a.TLSInfo }

// FromGRPC returns the verified peer of a grpc-go call, read from its
// connection's AuthInfo, and whether there was one. Only connections made
// by the mesh's transport credentials have one.
func FromGRPC(ctx context.Context) (*identity.Principal, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := p.AuthInfo.(*AuthInfo)
	if !ok || info == nil || info.Principal.IsZero() {
		return nil, false
	}
	return &info.Principal, true
}

// Conn is the per-connection state of a mesh HTTP server: the peer verified
// at the handshake. The server creates one per connection (in its
// ConnContext hook), the handshake's VerifyConnection fills it, and the HTTP
// layer reads it on every request.
type Conn struct {
	principal atomic.Pointer[identity.Principal]
}

// VerifiedPeer returns the peer verified at the handshake, or nil: what
// identity.FromContext reads from a context made by NewConnContext.
func (c *Conn) VerifiedPeer() *identity.Principal { return c.principal.Load() }

// NewConnContext returns the base context of a connection's requests,
// carrying c, so that every request's identity.FromContext returns the
// peer c's handshake verified, with no per-request context.
func NewConnContext(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, idkey.Key{}, c)
}

// SetPrincipal records the peer verified at the handshake.
func (c *Conn) SetPrincipal(p identity.Principal) { c.principal.Store(&p) }

// Principal returns the verified peer (shared by the connection's
// requests: never modify it), and whether the handshake verified one.
func (c *Conn) Principal() (*identity.Principal, bool) {
	p := c.principal.Load()
	if p == nil || p.IsZero() {
		return nil, false
	}
	return p, true
}

// NewContext returns ctx carrying p as the call's verified caller, which
// identity.FromContext then returns. Only the interceptors call it, with
// the connection's Principal from AuthInfo or Conn (a pointer: storing it
// allocates only the context).
func NewContext(ctx context.Context, p *identity.Principal) context.Context {
	return context.WithValue(ctx, idkey.Key{}, p)
}
