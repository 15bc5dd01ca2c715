package gateway_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/inventory"
)

// failingOrders fails every GetOrder with err.
type failingOrders struct {
	ordersv1.OrderServiceClient
	err error
}

func (f failingOrders) GetOrder(context.Context, *ordersv1.GetOrderRequest, ...grpc.CallOption) (*ordersv1.GetOrderResponse, error) {
	return nil, f.err
}

// Every code orders may fail with reaches the gateway's caller as the
// downstream package says: orders' answers about the request with their
// message, the rest with a generic one that names orders and nothing else.
func TestDownstreamErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		err  error
		code connect.Code
		msg  string
	}{
		{status.Error(codes.InvalidArgument, "order_id: must not be empty"), connect.CodeInvalidArgument, "order_id: must not be empty"},
		{status.Error(codes.NotFound, `order "x" not found`), connect.CodeNotFound, `order "x" not found`},
		{status.Error(codes.AlreadyExists, "taken"), connect.CodeAlreadyExists, "taken"},
		{status.Error(codes.FailedPrecondition, "payment declined"), connect.CodeFailedPrecondition, "payment declined"},
		{status.Error(codes.OutOfRange, "past the end"), connect.CodeOutOfRange, "past the end"},
		{status.Error(codes.Unavailable, "dial tcp 127.0.0.1:1: connect: connection refused"), connect.CodeUnavailable, "orders unavailable"},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), connect.CodeDeadlineExceeded, "orders timed out"},
		{status.Error(codes.Canceled, "context canceled"), connect.CodeCanceled, "orders call canceled"},
		{status.Error(codes.ResourceExhausted, "rate limit"), connect.CodeResourceExhausted, "orders overloaded"},
		{status.Error(codes.Aborted, "conflict"), connect.CodeAborted, "orders aborted the call"},
		{status.Error(codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/gateway may not call it"), connect.CodePermissionDenied, "orders denied the call"},
		{status.Error(codes.Unauthenticated, "no token"), connect.CodeInternal, "orders failed"},
		{status.Error(codes.Unimplemented, "unknown method"), connect.CodeInternal, "orders failed"},
		{status.Error(codes.Internal, "inventory returned no price"), connect.CodeInternal, "orders failed"},
		{status.Error(codes.Unknown, "panic"), connect.CodeInternal, "orders failed"},
		{status.Error(codes.DataLoss, "lost"), connect.CodeInternal, "orders failed"},
	}
	invSrv, _ := inventory.New(inventory.Config{}, nil)
	for _, tc := range testCases {
		t.Run(status.Code(tc.err).String(), func(t *testing.T) {
			t.Parallel()
			srv, err := gateway.New(gateway.Config{}, failingOrders{err: tc.err}, inproc.InventoryClient(invSrv), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = newClient(t, srv).GetOrder(t.Context(), connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: "ord_x"}))
			wantError(t, err, tc.code, tc.msg)
		})
	}
}
