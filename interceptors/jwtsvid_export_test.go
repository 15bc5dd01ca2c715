package interceptors

import (
	"context"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// VerifiedHTTPContext returns a request context whose verified caller is p,
// as the mesh's HTTP layer makes one from the connection's handshake.
func VerifiedHTTPContext(p identity.Principal) context.Context {
	return authn.NewContext(context.Background(), &p)
}
