package orders_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/internal/validation"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// maxMessage bounds the message of a refused oversized field, whatever the
// field's length: far below any client's header limit (16 KiB for grpcio).
const maxMessage = 256

// serveOrders serves srv over mTLS as orders, with the proto's request
// rules enforced as in the mesh, until the test ends and returns a client
// that calls it as the gateway.
func serveOrders(t *testing.T, m *meshtest.Mesh, srv *orders.Server, log *meshtest.Log, opts ...mesh.GRPCServerOption) ordersv1.OrderServiceClient {
	t.Helper()
	v, err := validation.GRPC()
	if err != nil {
		t.Fatal(err)
	}
	addr := m.ServeGRPC(meshtest.Orders, func(r grpc.ServiceRegistrar) {
		ordersv1.RegisterOrderServiceServer(r, srv)
	}, append([]mesh.GRPCServerOption{mesh.WithLogger(log.Logger), v}, opts...)...)
	return ordersv1.NewOrderServiceClient(m.DialGRPC(addr, meshtest.Gateway, meshtest.Orders))
}

// An oversized ID, sent over mTLS as the gateway would, is refused at once
// with InvalidArgument and a short message (a 1 MB one came back whole in
// grpc-message, over every client's header limit), reaches neither
// inventory nor the log, and leaves no order behind.
func TestLongIDsAreRefused(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	invSrv, err := inventory.New(inventory.Config{}, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	inv := &recordingInventory{InventoryServiceClient: inproc.InventoryClient(invSrv)}
	srv, err := orders.New(orders.Config{}, inv, payments.New(payments.Config{}, log.Logger), log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client := serveOrders(t, m, srv, log)

	for _, n := range []int{1 << 20, 200 << 10} {
		long := strings.Repeat("x", n)
		testCases := []struct {
			name string
			call func(context.Context) error
			msg  string
		}{
			{"CreateOrder customer_id", func(ctx context.Context) error {
				_, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: long, Items: cart("sku-apple", 1)})
				return err
			}, "validation error: customer_id: must be at most 128 bytes"},
			{"CreateOrder product_id", func(ctx context.Context) error {
				_, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{Items: cart("sku-apple", 1, long, 1)})
				return err
			}, "validation error: items[1].product_id: must be at most 128 bytes"},
			{"GetOrder order_id", func(ctx context.Context) error {
				_, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: long})
				return err
			}, "validation error: order_id: must be at most 128 bytes"},
			{"WatchOrder order_id", func(ctx context.Context) error {
				stream, err := client.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: long})
				for err == nil {
					_, err = stream.Recv()
				}
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}, "validation error: order_id: must be at most 128 bytes"},
		}
		for _, tc := range testCases {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(m.OnBehalfOf(context.Background(), meshtest.Alice), testTimeout)
				defer cancel()
				st := status.Convert(tc.call(ctx))
				if st.Code() != codes.InvalidArgument || st.Message() != tc.msg {
					t.Fatalf("error = %v %.200q, want InvalidArgument %q", st.Code(), st.Message(), tc.msg)
				}
				if len(st.Message()) > maxMessage {
					t.Fatalf("message of %d bytes, want at most %d", len(st.Message()), maxMessage)
				}
			})
		}
	}
	if reserved, _ := inv.calls(); len(reserved) != 0 {
		t.Fatalf("inventory was asked to reserve for %v, want nothing", reserved)
	}
	if got := log.String(); strings.Contains(got, strings.Repeat("x", input.ClipBytes+1)) {
		t.Fatalf("the log holds more than %d bytes of an oversized ID:\n%.1000s", input.ClipBytes, got)
	}
}
