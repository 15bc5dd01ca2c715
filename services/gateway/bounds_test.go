package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// maxMessage bounds the message of a refused oversized field, whatever the
// field's length: far below any client's header limit (16 KiB for grpcio).
const maxMessage = 256

// serveGateway serves srv's v1 and v2 storefronts over mTLS as the gateway,
// with the protos' request rules enforced, until the test ends and returns
// its address.
func serveGateway(t *testing.T, m *meshtest.Mesh, srv *gateway.Server, opts ...mesh.ConnectServerOption) string {
	t.Helper()
	return m.ServeConnect(meshtest.Gateway, func(cs *mesh.ConnectServer) error {
		if err := mesh.Mount(cs, gatewayv1connect.NewStorefrontServiceHandler, srv); err != nil {
			return err
		}
		return mesh.Mount(cs, gatewayv2connect.NewStorefrontServiceHandler, gateway.NewV2(srv))
	}, append([]mesh.ConnectServerOption{validated(t)}, opts...)...)
}

// protocols are the ways a person's client may speak to the gateway.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"connect", nil},
}

// An oversized ID, sent over mTLS by a person on gRPC or Connect, to either
// storefront version, is refused at once with InvalidArgument and a short
// message (a 1 MB customer_id came back whole in grpc-message: Python grpcio
// failed with RESOURCE_EXHAUSTED, grpc-js hung until its deadline), reaches
// no downstream and nothing of it reaches the log.
func TestLongIDsAreRefused(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	invSrv, err := inventory.New(inventory.Config{}, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	inv := inproc.InventoryClient(invSrv)
	ordSrv, err := orders.New(orders.Config{}, inv, payments.New(payments.Config{}, log.Logger), log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ordSrv.Close() })
	ord := &countingOrders{OrderServiceClient: inproc.OrdersClient(ordSrv)}
	srv, err := gateway.New(gateway.Config{}, ord, inv, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGateway(t, m, srv, mesh.WithLogger(log.Logger))
	hc := m.HTTPClient(meshtest.Alice, meshtest.Gateway)
	ctx := t.Context()

	for _, protocol := range protocols {
		v1 := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, protocol.opts...)
		v2 := gatewayv2connect.NewStorefrontServiceClient(hc, "https://"+addr, protocol.opts...)
		for _, n := range []int{1 << 20, 200 << 10} {
			long := strings.Repeat("x", n)
			testCases := []struct {
				name string
				call func(context.Context) error
				msg  string
			}{
				{"v1 PlaceOrder customer_id", func(ctx context.Context) error {
					_, err := v1.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: long, Items: cart("sku-apple", 1)}))
					return err
				}, "validation error: customer_id: must be at most 128 bytes"},
				{"v1 PlaceOrder product_id", func(ctx context.Context) error {
					_, err := v1.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: cart("sku-apple", 1, long, 1)}))
					return err
				}, "validation error: items[1].product_id: must be at most 128 bytes"},
				{"v1 GetOrder order_id", func(ctx context.Context) error {
					_, err := v1.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: long}))
					return err
				}, "validation error: order_id: must be at most 128 bytes"},
				{"v1 WatchOrder order_id", func(ctx context.Context) error {
					return drain(v1.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: long})))
				}, "validation error: order_id: must be at most 128 bytes"},
				{"v2 ListProducts page_token", func(ctx context.Context) error {
					_, err := v2.ListProducts(ctx, connect.NewRequest(&gatewayv2.ListProductsRequest{PageToken: long}))
					return err
				}, "page_token: not a token returned by ListProducts"},
				{"v2 PlaceOrder customer_id", func(ctx context.Context) error {
					_, err := v2.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{CustomerId: long,
						Items: []*gatewayv2.CartItem{{ProductId: "sku-apple", Quantity: 1}}}))
					return err
				}, "validation error: customer_id: must be at most 128 bytes"},
				{"v2 PlaceOrder product_id", func(ctx context.Context) error {
					_, err := v2.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{
						Items: []*gatewayv2.CartItem{{ProductId: long, Quantity: 1}}}))
					return err
				}, "validation error: items[0].product_id: must be at most 128 bytes"},
				{"v2 GetOrder order_id", func(ctx context.Context) error {
					_, err := v2.GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{OrderId: long}))
					return err
				}, "validation error: order_id: must be at most 128 bytes"},
				{"v2 WatchOrder order_id", func(ctx context.Context) error {
					return drain(v2.WatchOrder(ctx, connect.NewRequest(&gatewayv2.WatchOrderRequest{OrderId: long})))
				}, "validation error: order_id: must be at most 128 bytes"},
			}
			for _, tc := range testCases {
				t.Run(fmt.Sprintf("%s/%s/%d", protocol.name, tc.name, n), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(ctx, testTimeout)
					defer cancel()
					err := tc.call(ctx)
					want := tc.msg
					if strings.Contains(want, "%d") {
						want = fmt.Sprintf(want, n)
					}
					var ce *connect.Error
					if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Message() != want {
						t.Fatalf("error = %.300v, want invalid_argument %q", err, want)
					}
					if len(ce.Message()) > maxMessage {
						t.Fatalf("message of %d bytes, want at most %d", len(ce.Message()), maxMessage)
					}
				})
			}
		}
	}
	if n := ord.calls.Load(); n != 0 {
		t.Fatalf("orders was called %d times, want never", n)
	}
	if s := stock(t, newClientFor(t, hc, addr)); s != "sku-apple=100 sku-fig=20 sku-pear=50 sku-truffle=10" {
		t.Fatalf("stock = %s, want it untouched", s)
	}
	if got := log.String(); strings.Contains(got, strings.Repeat("x", input.ClipBytes+1)) {
		t.Fatalf("the log holds more than %d bytes of an oversized ID:\n%.1000s", input.ClipBytes, got)
	}
}

// A claimed customer_id that is someone else's comes back cut to 64 bytes.
func TestClaimedCustomerIsClipped(t *testing.T) {
	t.Parallel()
	c := newShop(t, gateway.Config{}, 0)
	claimed := strings.Repeat("b", input.MaxIDBytes)
	_, err := c.PlaceOrder(t.Context(), connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: claimed, Items: cart("sku-apple", 1)}))
	wantError(t, err, connect.CodePermissionDenied, `customer_id "`+claimed[:input.ClipBytes]+
		`…(128 bytes)" is not the caller spiffe://shop.example/user/alice: orders are placed for the caller`)
}

// countingOrders counts the calls made to orders.
type countingOrders struct {
	ordersv1.OrderServiceClient
	calls atomic.Int64
}

func (c *countingOrders) CreateOrder(ctx context.Context, in *ordersv1.CreateOrderRequest, opts ...grpc.CallOption) (*ordersv1.CreateOrderResponse, error) {
	c.calls.Add(1)
	return c.OrderServiceClient.CreateOrder(ctx, in, opts...)
}

func (c *countingOrders) GetOrder(ctx context.Context, in *ordersv1.GetOrderRequest, opts ...grpc.CallOption) (*ordersv1.GetOrderResponse, error) {
	c.calls.Add(1)
	return c.OrderServiceClient.GetOrder(ctx, in, opts...)
}

func (c *countingOrders) WatchOrder(ctx context.Context, in *ordersv1.WatchOrderRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[ordersv1.WatchOrderResponse], error) {
	c.calls.Add(1)
	return c.OrderServiceClient.WatchOrder(ctx, in, opts...)
}

// drain reads a server stream to its end and returns its error.
func drain[T any](stream *connect.ServerStreamForClient[T], err error) error {
	if err != nil {
		return err
	}
	for stream.Receive() {
	}
	_ = stream.Close()
	return stream.Err()
}

// newClientFor returns a v1 storefront client on hc for the gateway at addr.
func newClientFor(t *testing.T, hc connect.HTTPClient, addr string) gatewayv1connect.StorefrontServiceClient {
	t.Helper()
	return gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr)
}

// The page token after the longest product ID is not too long.
func TestV2PageTokenAfterLongestID(t *testing.T) {
	t.Parallel()
	longest := strings.Repeat("m", input.MaxIDBytes)
	ids := []string{"a", longest, "z"}
	srv, err := gateway.New(gateway.Config{}, fakeOrders{}, fakeInventory{ids: &ids}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := newV2Client(t, gateway.NewV2(srv))
	_, next, err := page(t.Context(), c, 2, "")
	if err != nil || next == "" {
		t.Fatalf("first page: %q, %v", next, err)
	}
	got, next, err := page(t.Context(), c, 2, next)
	if err != nil || fmt.Sprint(got) != "[z]" || next != "" {
		t.Fatalf("page after the longest ID = %v %q, %v; want [z]", got, next, err)
	}
}
