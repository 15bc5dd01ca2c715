// Package benchsvc serves the sample's inventory service on both stacks
// with the same method bodies, for the benchmarks and the meshbench
// harness: grpc-go takes the service as it is, connect-go gets it through
// a thin adapter.
package benchsvc

import (
	"context"

	"connectrpc.com/connect"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/gen/shop/inventory/v1/inventoryv1connect"
	"github.com/trustmesh/trustmesh/services/inventory"
)

// Inventory returns the inventory service with its default catalogue.
func Inventory() (*inventory.Server, error) {
	return inventory.New(inventory.Config{}, nil)
}

// ConnectInventory serves impl's ListProducts on connect-go (the other
// methods answer Unimplemented).
func ConnectInventory(impl *inventory.Server) inventoryv1connect.InventoryServiceHandler {
	return connectInventory{impl: impl}
}

type connectInventory struct {
	inventoryv1connect.UnimplementedInventoryServiceHandler
	impl *inventory.Server
}

func (c connectInventory) ListProducts(ctx context.Context, req *connect.Request[inventoryv1.ListProductsRequest]) (*connect.Response[inventoryv1.ListProductsResponse], error) {
	res, err := c.impl.ListProducts(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}
