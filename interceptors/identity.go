package interceptors

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

var errUnauthenticated = errors.New("interceptors: no verified peer certificate on this connection")

// principalFromGRPC returns the caller of a grpc-go call: the peer the
// mesh's transport credentials verified at the handshake. A connection made
// by any other credentials (grpc-go's own TLS, insecure) has none. The
// Principal is the connection's, shared by its calls: never modify it.
func principalFromGRPC(ctx context.Context) (*identity.Principal, error) {
	if p, ok := authn.FromGRPC(ctx); ok {
		return p, nil
	}
	return nil, errUnauthenticated
}

// UnaryServerIdentity returns a grpc-go unary interceptor that puts the
// caller's [identity.Principal] in the context, or refuses the call with
// Unauthenticated when the connection has no verified peer. The peer is the
// one the mesh's transport credentials verified at the handshake (the
// mesh package's servers use them); on a connection made by any other
// credentials every call is refused.
func UnaryServerIdentity() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		pr, err := principalFromGRPC(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(authn.NewContext(ctx, pr), req)
	}
}

// StreamServerIdentity is the streaming form of [UnaryServerIdentity].
func StreamServerIdentity() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		pr, err := principalFromGRPC(ss.Context())
		if err != nil {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: authn.NewContext(ss.Context(), pr)})
	}
}

// contextStream overrides the context of a grpc.ServerStream. It is a fresh
// wrapper each time, never a mutation of an outer one.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// maxEcho bounds how much of a caller-chosen string (a method path) goes
// into an error message or a log line: it is cut with [clip.Counted] to
// maxEcho bytes on a rune boundary and marked "…(N bytes)" when longer, so
// that nothing a caller sends comes back or is logged unbounded.
const maxEcho = 256
