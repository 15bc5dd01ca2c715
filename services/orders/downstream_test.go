package orders_test

import (
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// wantGeneric fails the test unless err is code with exactly msg, which
// names no address, port or SPIFFE ID.
func wantGeneric(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	wantStatus(t, err, code, msg)
	for _, leak := range []string{"127.0.0.1", "spiffe://", "dial", "tcp"} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("error %q tells the caller %q", err, leak)
		}
	}
}

// With inventory down (nothing listens on its port), the gateway calling
// orders over mTLS reads "inventory unavailable", not the dial error (which
// named the address); orders' log has the dial error with the trace ID.
func TestInventoryDown(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	traces := meshtest.NewTraces(t)
	inv := inventoryv1.NewInventoryServiceClient(m.DialGRPCWith(m.Credentials(meshtest.Orders), meshtest.ClosedAddr(t), meshtest.Inventory))
	srv, err := orders.New(orders.Config{}, inv, payments.New(payments.Config{}, nil), log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client := serveOrders(t, m, srv, log, traces.ServerOption())

	_, err = client.CreateOrder(m.OnBehalfOf(t.Context(), meshtest.Alice), &ordersv1.CreateOrderRequest{Items: cart("sku-apple", 1)})
	wantGeneric(t, err, codes.Unavailable, "inventory unavailable")
	id := traces.WaitServerTraceIDs(t, 1)[0]
	if !log.HasLine(`msg="order rejected: reservation failed"`, "code=Unavailable", "connect: connection refused", "trace_id="+id) {
		t.Errorf("no log line with trace_id=%s has the dial error; log:\n%s", id, log.String())
	}
	// The reservation may have been made before the error: its release is
	// attempted, and its failure logged with the trace ID too.
	if !log.HasLine(`msg="compensation failed: stock stays reserved"`, "connect: connection refused", "trace_id="+id) {
		t.Errorf("no log line with trace_id=%s says the release failed; log:\n%s", id, log.String())
	}
}

// A misrouted hop, orders' payments client reaching payments while it
// expects another SPIFFE ID, is refused at the handshake: the gateway reads
// "payments unavailable", the order is kept CANCELLED with the reason
// "payment failed: payments unavailable" (which GetOrder shows people), the
// stock is released, and orders' log has the refusal with the trace ID.
func TestMisroutedPayments(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	traces := meshtest.NewTraces(t)
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := &recordingInventory{InventoryServiceClient: inproc.InventoryClient(invSrv)}
	payAddr := m.ServeConnect(meshtest.Payments, func(cs *mesh.ConnectServer) error {
		return mesh.Mount(cs, paymentsv1connect.NewPaymentServiceHandler, payments.New(payments.Config{}, nil))
	})
	// The payments client expects inventory's ID at payments' address.
	pay := paymentsv1connect.NewPaymentServiceClient(m.HTTPClientWith(m.Credentials(meshtest.Orders), meshtest.Inventory),
		"https://"+payAddr, connect.WithGRPC())
	srv, err := orders.New(orders.Config{}, inv, pay, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client := serveOrders(t, m, srv, log, traces.ServerOption())

	ctx := m.OnBehalfOf(t.Context(), meshtest.Alice)
	_, err = client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{Items: cart("sku-apple", 1)})
	wantGeneric(t, err, codes.Unavailable, "payments unavailable")
	reserved, released := inv.calls()
	if len(reserved) != 1 || fmt.Sprint(released) != fmt.Sprint(reserved) {
		t.Fatalf("reserved %v, released %v; want the one order released", reserved, released)
	}
	res, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: reserved[0]})
	if err != nil {
		t.Fatal(err)
	}
	if o := res.GetOrder(); o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED || o.GetStatusReason() != "payment failed: payments unavailable" {
		t.Fatalf("order = %v %q, want CANCELLED with reason %q", o.GetStatus(), o.GetStatusReason(), "payment failed: payments unavailable")
	}
	id := traces.WaitServerTraceIDs(t, 1)[0]
	if !log.HasLine(`msg="order failed: charge failed"`, "code=Unavailable", "not authorized: want", meshtest.Inventory, "trace_id="+id) {
		t.Errorf("no log line with trace_id=%s has the refused handshake; log:\n%s", id, log.String())
	}
}

// A downstream's answer about the request reaches the gateway with its
// message; any other failure with a generic one (see the downstream
// package's table, tested there).
func TestDownstreamErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name       string
		reserveErr error
		pay        paymentsv1connect.PaymentServiceClient
		code       codes.Code
		msg        string
	}{
		{"reserve not found", status.Error(codes.NotFound, `items[0].product_id: unknown product "sku-kiwi"`), nil,
			codes.NotFound, `items[0].product_id: unknown product "sku-kiwi"`},
		{"reserve denied", status.Error(codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/orders may not call /shop.inventory.v1.InventoryService/Reserve"), nil,
			codes.PermissionDenied, "inventory denied the call"},
		{"reserve internal", status.Error(codes.Internal, "grpc: error unmarshalling response"), nil,
			codes.Internal, "inventory failed"},
		{"charge declined", nil, nil,
			codes.FailedPrecondition, "payment declined: amount EUR 1350.00 exceeds limit EUR 1000.00"},
		{"charge timed out", nil, failingPayments{err: connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("read tcp 127.0.0.1:1: i/o timeout"))},
			codes.DeadlineExceeded, "payments timed out"},
		{"charge unauthenticated", nil, failingPayments{err: connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("invalid transaction token"))},
			codes.Internal, "payments failed"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{pay: tc.pay, reserveErr: tc.reserveErr})
			_, err := create(f, cart("sku-truffle", 3))
			wantGeneric(t, err, tc.code, tc.msg)
		})
	}
}
