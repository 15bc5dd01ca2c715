package interceptors

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
)

// PrincipalAuthInfo is implemented by the credentials.AuthInfo of a gRPC
// connection whose peer was verified at the handshake (the mesh package's
// transport credentials provide it), so the Principal is read once per
// connection rather than once per call.
type PrincipalAuthInfo interface {
	credentials.AuthInfo
	Principal() identity.Principal
}

var errUnauthenticated = errors.New("interceptors: no verified peer certificate on this connection")

// PrincipalFromGRPC returns the verified caller of a grpc-go call from its
// connection (in any interceptor, before or after [UnaryServerIdentity]),
// or an error when the connection has none.
func PrincipalFromGRPC(ctx context.Context) (identity.Principal, error) {
	return principalFromGRPC(ctx)
}

// principalFromGRPC returns the caller of a grpc-go call.
func principalFromGRPC(ctx context.Context) (identity.Principal, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return identity.Principal{}, errUnauthenticated
	}
	switch info := p.AuthInfo.(type) {
	case PrincipalAuthInfo:
		if pr := info.Principal(); !pr.IsZero() {
			return pr, nil
		}
	case credentials.TLSInfo:
		// Plain grpc-go TLS credentials: the chain was verified by whoever
		// configured them; read the ID per call (slower path).
		return identity.FromConnectionState(&info.State)
	}
	return identity.Principal{}, errUnauthenticated
}

// UnaryServerIdentity returns a grpc-go unary interceptor that puts the
// caller's [identity.Principal] in the context, or refuses the call with
// Unauthenticated when the connection has no verified peer.
func UnaryServerIdentity() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		pr, err := principalFromGRPC(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(identity.NewContext(ctx, pr), req)
	}
}

// StreamServerIdentity is the streaming form of [UnaryServerIdentity].
func StreamServerIdentity() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		pr, err := principalFromGRPC(ss.Context())
		if err != nil {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: identity.NewContext(ss.Context(), pr)})
	}
}

// contextStream overrides the context of a grpc.ServerStream. It is a fresh
// wrapper each time, never a mutation of an outer one.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// connPrincipal caches the Principal of one HTTP connection.
type connPrincipal struct {
	once sync.Once
	p    identity.Principal
	err  error
}

type connKey struct{}

// ConnContext is an http.Server ConnContext hook that gives each connection a
// slot in which [HTTPIdentity] caches the peer's Principal, so its SPIFFE ID is
// read once per connection, not once per request.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connPrincipal{})
}

func principalFromHTTP(r *http.Request) (identity.Principal, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return identity.Principal{}, errUnauthenticated
	}
	slot, ok := r.Context().Value(connKey{}).(*connPrincipal)
	if !ok {
		return identity.FromConnectionState(r.TLS)
	}
	slot.once.Do(func() { slot.p, slot.err = identity.FromConnectionState(r.TLS) })
	return slot.p, slot.err
}

// HTTPIdentity is net/http middleware for connect-go handlers: it puts the
// caller's [identity.Principal] (from the request's TLS connection) in the
// request context, or answers an Unauthenticated error in the protocol the
// client speaks (gRPC, gRPC-Web or Connect) when there is no verified peer.
func HTTPIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pr, err := principalFromHTTP(r)
		if err != nil {
			writeConnectError(w, r, connect.NewError(connect.CodeUnauthenticated, err))
			return
		}
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), pr)))
	})
}

// writeConnectError answers err in the protocol of the request, so grpcurl,
// gRPC-Web and Connect clients all see a proper status.
func writeConnectError(w http.ResponseWriter, r *http.Request, err *connect.Error) {
	ew := connect.NewErrorWriter()
	if !ew.IsSupported(r) {
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	_ = ew.Write(w, r, err)
}
