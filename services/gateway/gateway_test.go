package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/internal/validation"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

const testTimeout = 10 * time.Second

// validated is the option that enforces the protos' request rules, as the
// mesh serves the gateway.
func validated(t *testing.T) mesh.ConnectServerOption {
	t.Helper()
	v, err := validation.Connect()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newClient serves srv's storefront over the mesh's mTLS on loopback, with
// the protos' request rules enforced, and returns a client for it that
// calls as alice.
func newClient(t *testing.T, srv gatewayv1connect.StorefrontServiceHandler, opts ...connect.ClientOption) gatewayv1connect.StorefrontServiceClient {
	t.Helper()
	m := meshtest.New(t)
	addr := m.ServeConnect(meshtest.Gateway, func(cs *mesh.ConnectServer) error {
		return mesh.Mount(cs, gatewayv1connect.NewStorefrontServiceHandler, srv)
	}, validated(t))
	return gatewayv1connect.NewStorefrontServiceClient(m.HTTPClient(meshtest.Alice, meshtest.Gateway), "https://"+addr, opts...)
}

// newShop wires the gateway to the real orders, inventory (default
// catalogue) and payments (default limit of EUR 1000.00) and returns a client
// for it.
func newShop(t *testing.T, cfg gateway.Config, step time.Duration, opts ...connect.ClientOption) gatewayv1connect.StorefrontServiceClient {
	t.Helper()
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatalf("inventory.New: %v", err)
	}
	inv := inproc.InventoryClient(invSrv)
	ordSrv, err := orders.New(orders.Config{StepInterval: step}, inv, payments.New(payments.Config{}, nil), nil)
	if err != nil {
		t.Fatalf("orders.New: %v", err)
	}
	t.Cleanup(func() { _ = ordSrv.Close() })
	srv, err := gateway.New(cfg, inproc.OrdersClient(ordSrv), inv, nil)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	return newClient(t, srv, opts...)
}

func wantError(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != code || ce.Message() != msg {
		t.Fatalf("error = %v, want %v %q", err, code, msg)
	}
}

func cart(kv ...any) []*gatewayv1.CartItem {
	var items []*gatewayv1.CartItem
	for i := 0; i < len(kv); i += 2 {
		items = append(items, &gatewayv1.CartItem{ProductId: kv[i].(string), Quantity: int32(kv[i+1].(int))})
	}
	return items
}

func place(ctx context.Context, c gatewayv1connect.StorefrontServiceClient, items []*gatewayv1.CartItem) (*gatewayv1.Order, error) {
	res, err := c.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: "alice", Items: items}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetOrder(), nil
}

func stock(t *testing.T, c gatewayv1connect.StorefrontServiceClient) string {
	t.Helper()
	res, err := c.ListProducts(context.Background(), connect.NewRequest(&gatewayv1.ListProductsRequest{}))
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	var s []string
	for _, p := range res.Msg.GetProducts() {
		s = append(s, fmt.Sprintf("%s=%d", p.GetId(), p.GetAvailableQuantity()))
	}
	return strings.Join(s, " ")
}

func TestNewRejectsNilClients(t *testing.T) {
	t.Parallel()
	invSrv, _ := inventory.New(inventory.Config{}, nil)
	inv := inproc.InventoryClient(invSrv)
	if _, err := gateway.New(gateway.Config{}, nil, inv, nil); err == nil || err.Error() != "gateway: nil orders client" {
		t.Fatalf("New(nil orders) error = %v", err)
	}
	if _, err := gateway.New(gateway.Config{}, fakeOrders{}, nil, nil); err == nil || err.Error() != "gateway: nil inventory client" {
		t.Fatalf("New(nil inventory) error = %v", err)
	}
}

func TestListProducts(t *testing.T) {
	t.Parallel()
	c := newShop(t, gateway.Config{}, 0)
	res, err := c.ListProducts(context.Background(), connect.NewRequest(&gatewayv1.ListProductsRequest{}))
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	p := res.Msg.GetProducts()[0]
	if got := fmt.Sprintf("%s %q %d %s %d", p.GetId(), p.GetName(), p.GetPrice().GetUnitsMinor(), p.GetPrice().GetCurrencyCode(), p.GetAvailableQuantity()); got != `sku-apple "Apple" 45 EUR 100` {
		t.Fatalf("first product = %s", got)
	}
}

func TestPlaceOrderErrors(t *testing.T) {
	t.Parallel()
	tooMany := make([]*gatewayv1.CartItem, 4)
	for i := range tooMany {
		tooMany[i] = &gatewayv1.CartItem{ProductId: fmt.Sprintf("sku-%d", i), Quantity: 1}
	}
	testCases := []struct {
		name     string
		customer string
		items    []*gatewayv1.CartItem
		code     connect.Code
		msg      string
	}{
		{"someone else", "bob", cart("sku-apple", 1), connect.CodePermissionDenied, `customer_id "bob" is not the caller spiffe://shop.example/user/alice: orders are placed for the caller`},
		{"no items", "alice", nil, connect.CodeInvalidArgument, "validation error: items: must contain at least 1 item(s)"},
		{"too many items", "alice", tooMany, connect.CodeInvalidArgument, "items: at most 3 items per order, got 4"},
		{"empty product id", "alice", cart("sku-apple", 1, "", 1), connect.CodeInvalidArgument, "validation error: items[1].product_id: value is required"},
		{"negative quantity", "alice", cart("sku-apple", -1), connect.CodeInvalidArgument, "validation error: items[0].quantity: must be greater than 0"},
		{"duplicate product", "alice", cart("sku-apple", 1, "sku-apple", 1), connect.CodeInvalidArgument, "validation error: items: must list each product at most once"},
		// Downstream errors keep their code and message.
		{"unknown product", "alice", cart("sku-kiwi", 1), connect.CodeNotFound, `items[0].product_id: unknown product "sku-kiwi"`},
		{"short stock", "alice", cart("sku-fig", 21), connect.CodeFailedPrecondition, `insufficient stock for product "sku-fig": requested 21, available 20`},
		{"declined", "alice", cart("sku-truffle", 3), connect.CodeFailedPrecondition, "payment declined: amount EUR 1350.00 exceeds limit EUR 1000.00"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newShop(t, gateway.Config{MaxItems: 3}, 0)
			before := stock(t, c)
			_, err := c.PlaceOrder(context.Background(), connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: tc.customer, Items: tc.items}))
			wantError(t, err, tc.code, tc.msg)
			if after := stock(t, c); after != before {
				t.Fatalf("stock changed: %s -> %s", before, after)
			}
		})
	}
}

func TestPlaceAndGetOrder(t *testing.T) {
	t.Parallel()
	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := newShop(t, gateway.Config{}, 0, proto.opts...)
			o, err := place(ctx, c, cart("sku-pear", 2, "sku-fig", 1))
			if err != nil {
				t.Fatalf("PlaceOrder: %v", err)
			}
			l := o.GetLineItems()[0]
			got := fmt.Sprintf("%s %s %d lines, %s %d x %d = %d, total %d %s",
				o.GetCustomerId(), o.GetStatus(), len(o.GetLineItems()), l.GetProductName(), l.GetQuantity(),
				l.GetUnitPrice().GetUnitsMinor(), l.GetLineTotal().GetUnitsMinor(), o.GetTotal().GetUnitsMinor(), o.GetTotal().GetCurrencyCode())
			if want := "spiffe://shop.example/user/alice ORDER_STATUS_CONFIRMED 2 lines, Pear 2 x 60 = 120, total 240 EUR"; got != want {
				t.Fatalf("order = %s, want %s", got, want)
			}
			if !strings.HasPrefix(o.GetId(), "ord_") || !strings.HasPrefix(o.GetPaymentId(), "pay_") || o.GetCreateTime() == nil {
				t.Fatalf("order = %v", o)
			}

			res, err := c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: o.GetId()}))
			if err != nil {
				t.Fatalf("GetOrder: %v", err)
			}
			if res.Msg.GetOrder().GetId() != o.GetId() || res.Msg.GetOrder().GetStatus() != gatewayv1.OrderStatus_ORDER_STATUS_CONFIRMED {
				t.Fatalf("GetOrder = %v", res.Msg.GetOrder())
			}
			_, err = c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{}))
			wantError(t, err, connect.CodeInvalidArgument, "validation error: order_id: value is required")
			_, err = c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: "ord_nope"}))
			wantError(t, err, connect.CodeNotFound, `order "ord_nope" not found`)
		})
	}
}

// watch collects the statuses of a WatchOrder stream until it ends.
func watch(ctx context.Context, c gatewayv1connect.StorefrontServiceClient, id string) ([]gatewayv1.OrderStatus, error) {
	stream, err := c.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: id}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var got []gatewayv1.OrderStatus
	for stream.Receive() {
		got = append(got, stream.Msg().GetOrder().GetStatus())
	}
	return got, stream.Err()
}

func TestWatchOrder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := newShop(t, gateway.Config{}, 5*time.Millisecond)

	o, err := place(ctx, c, cart("sku-apple", 1))
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	got, err := watch(ctx, c, o.GetId())
	all := []gatewayv1.OrderStatus{
		gatewayv1.OrderStatus_ORDER_STATUS_CONFIRMED,
		gatewayv1.OrderStatus_ORDER_STATUS_SHIPPED,
		gatewayv1.OrderStatus_ORDER_STATUS_DELIVERED,
	}
	// The watch may start after a step, but it never misses or repeats one.
	if err != nil || len(got) == 0 || fmt.Sprint(got) != fmt.Sprint(all[len(all)-len(got):]) {
		t.Fatalf("watch = %v, %v; want a suffix of %v", got, err, all)
	}

	_, err = watch(ctx, c, "")
	wantError(t, err, connect.CodeInvalidArgument, "validation error: order_id: value is required")
	_, err = watch(ctx, c, "ord_nope")
	wantError(t, err, connect.CodeNotFound, `order "ord_nope" not found`)
}

// fakeOrders reports the deadline each call carries.
type fakeOrders struct {
	ordersv1.OrderServiceClient
}

func (fakeOrders) GetOrder(ctx context.Context, _ *ordersv1.GetOrderRequest, _ ...grpc.CallOption) (*ordersv1.GetOrderResponse, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "no deadline")
	}
	return nil, status.Errorf(codes.FailedPrecondition, "deadline in %s", time.Until(d).Round(time.Hour)) // a code whose message is relayed
}

func TestDeadlineReachesDownstream(t *testing.T) {
	t.Parallel()
	invSrv, _ := inventory.New(inventory.Config{}, nil)
	srv, err := gateway.New(gateway.Config{}, fakeOrders{}, inproc.InventoryClient(invSrv), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := newClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err = c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: "ord_x"}))
	wantError(t, err, connect.CodeFailedPrecondition, "deadline in 1h0m0s")
}
