package gateway

import (
	"context"
	"errors"
	"fmt"
	"path"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/services/internal/input"
)

// Orders belong to the person who placed them, as the mesh verified them:
// the caller's SPIFFE ID (spiffe://shop.example/user/alice), never a name a
// request claims.

// customer returns the verified caller of the current call.
func customer(ctx context.Context) (spiffeid.ID, error) {
	p, ok := identity.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, connect.NewError(connect.CodeUnauthenticated, errors.New("no verified caller"))
	}
	return p.ID, nil
}

// checkClaimedCustomer accepts an empty customer_id, the caller's SPIFFE ID
// or the last segment of its path (alice for spiffe://shop.example/user/alice);
// anything else is someone else.
func checkClaimedCustomer(claimed string, caller spiffeid.ID) error {
	if claimed == "" || claimed == caller.String() || claimed == path.Base(caller.Path()) {
		return nil
	}
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("customer_id %q is not the caller %s: orders are placed for the caller", input.Clip(claimed), caller))
}

// checkOwner hides an order that is not the caller's behind the same
// NotFound as an order that does not exist.
func checkOwner(o *ordersv1.Order, caller spiffeid.ID, orderID string) error {
	if o.GetCustomerId() != caller.String() {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("order %q not found", input.Clip(orderID)))
	}
	return nil
}
