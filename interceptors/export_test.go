package interceptors

import (
	"time"

	"context"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// VerifiedPeerContext returns a context whose gRPC peer is p, as the mesh's
// transport credentials attach it after verifying p at the handshake. Only
// this package's tests can make one; everywhere else it takes a real
// handshake.
func VerifiedPeerContext(p identity.Principal) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &authn.AuthInfo{TLSInfo: credentials.TLSInfo{}, Principal: p}})
}

// SetRepeatWindow shortens the window in which a's identical refusals are
// counted, for tests.
func SetRepeatWindow(a *Authorizer, d time.Duration) { a.repeats.window = d }
