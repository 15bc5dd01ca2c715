package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// newV2Client serves srv's v2 storefront over the mesh's mTLS on loopback,
// with the protos' request rules enforced, and returns a client for it that
// calls as alice.
func newV2Client(t *testing.T, srv gatewayv2connect.StorefrontServiceHandler, opts ...connect.ClientOption) gatewayv2connect.StorefrontServiceClient {
	t.Helper()
	m := meshtest.New(t)
	addr := m.ServeConnect(meshtest.Gateway, func(cs *mesh.ConnectServer) error {
		return mesh.Mount(cs, gatewayv2connect.NewStorefrontServiceHandler, srv)
	}, validated(t))
	return gatewayv2connect.NewStorefrontServiceClient(m.HTTPClient(meshtest.Alice, meshtest.Gateway), "https://"+addr, opts...)
}

// newV2Shop is newShop for the v2 storefront.
func newV2Shop(t *testing.T, step time.Duration, opts ...connect.ClientOption) gatewayv2connect.StorefrontServiceClient {
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
	srv, err := gateway.New(gateway.Config{}, inproc.OrdersClient(ordSrv), inv, nil)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	return newV2Client(t, gateway.NewV2(srv), opts...)
}

// page lists one page and returns its product IDs and next page token.
func page(ctx context.Context, c gatewayv2connect.StorefrontServiceClient, size int32, token string) (ids []string, next string, err error) {
	res, err := c.ListProducts(ctx, connect.NewRequest(&gatewayv2.ListProductsRequest{PageSize: size, PageToken: token}))
	if err != nil {
		return nil, "", err
	}
	for _, p := range res.Msg.GetProducts() {
		ids = append(ids, p.GetId())
	}
	return ids, res.Msg.GetNextPageToken(), nil
}

// pages lists the whole catalogue size products at a time and returns the
// pages, "a b|c d".
func pages(t *testing.T, c gatewayv2connect.StorefrontServiceClient, size int32) string {
	t.Helper()
	var out []string
	token := ""
	for range 10 {
		ids, next, err := page(context.Background(), c, size, token)
		if err != nil {
			t.Fatalf("ListProducts(%d, %q): %v", size, token, err)
		}
		out = append(out, strings.Join(ids, " "))
		if next == "" {
			return strings.Join(out, "|")
		}
		token = next
	}
	t.Fatalf("more than 10 pages: %v", out)
	return ""
}

func TestV2ListProductsPages(t *testing.T) {
	t.Parallel()
	c := newV2Shop(t, 0)
	testCases := []struct {
		size int32
		want string
	}{
		{0, "sku-apple sku-fig sku-pear sku-truffle"}, // DefaultPageSize
		{1, "sku-apple|sku-fig|sku-pear|sku-truffle"},
		{3, "sku-apple sku-fig sku-pear|sku-truffle"},
		{4, "sku-apple sku-fig sku-pear sku-truffle"}, // an exact fit has no empty last page
		{1000, "sku-apple sku-fig sku-pear sku-truffle"},
	}
	for _, tc := range testCases {
		if got := pages(t, c, tc.size); got != tc.want {
			t.Errorf("pages of %d = %q, want %q", tc.size, got, tc.want)
		}
	}

	res, err := c.ListProducts(context.Background(), connect.NewRequest(&gatewayv2.ListProductsRequest{PageSize: 1}))
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	p := res.Msg.GetProducts()[0]
	if got := fmt.Sprintf("%s %q %d %s %d", p.GetId(), p.GetName(), p.GetPrice().GetUnitsMinor(), p.GetPrice().GetCurrencyCode(), p.GetAvailableQuantity()); got != `sku-apple "Apple" 45 EUR 100` {
		t.Fatalf("first product = %s", got)
	}
}

func TestV2ListProductsErrors(t *testing.T) {
	t.Parallel()
	c := newV2Shop(t, 0)
	testCases := []struct {
		name  string
		size  int32
		token string
		msg   string
	}{
		{"negative page size", -1, "", "validation error: page_size: must be greater than or equal to 0"},
		{"not base64", 0, "!!", "page_token: not a token returned by ListProducts"},
		{"a product ID", 0, "sku-apple", "page_token: not a token returned by ListProducts"},
		{"empty after prefix", 0, "Z2F0ZXdheS52Mi9hZnRlcjo", "page_token: not a token returned by ListProducts"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := page(context.Background(), c, tc.size, tc.token)
			wantError(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
}

// fakeInventory lists products in the order given, which a test may change
// between calls.
type fakeInventory struct {
	inventoryv1.InventoryServiceClient
	ids *[]string
}

func (f fakeInventory) ListProducts(context.Context, *inventoryv1.ListProductsRequest, ...grpc.CallOption) (*inventoryv1.ListProductsResponse, error) {
	res := &inventoryv1.ListProductsResponse{}
	for _, id := range *f.ids {
		res.Products = append(res.Products, &inventoryv1.Product{Id: id})
	}
	return res, nil
}

// A page token points after a product ID, not at a position: changes to the
// catalogue between pages neither repeat nor skip a product that stays. The
// gateway also orders what inventory sends.
func TestV2ListProductsTokenSurvivesChanges(t *testing.T) {
	t.Parallel()
	ids := []string{"d", "b", "a", "c"}
	srv, err := gateway.New(gateway.Config{}, fakeOrders{}, fakeInventory{ids: &ids}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := newV2Client(t, gateway.NewV2(srv))
	ctx := context.Background()
	got, next, err := page(ctx, c, 2, "")
	if err != nil || strings.Join(got, " ") != "a b" || next == "" {
		t.Fatalf("first page = %v %q %v", got, next, err)
	}
	ids = []string{"aa", "c", "e", "d"} // "aa" added before the token, "b" removed, "e" added after
	got, next, err = page(ctx, c, 2, next)
	if err != nil || strings.Join(got, " ") != "c d" || next == "" {
		t.Fatalf("second page = %v %q %v", got, next, err)
	}
	got, next, err = page(ctx, c, 2, next)
	if err != nil || strings.Join(got, " ") != "e" || next != "" {
		t.Fatalf("third page = %v %q %v", got, next, err)
	}
}

func TestV2PlaceGetAndWatchOrder(t *testing.T) {
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
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c := newV2Shop(t, 5*time.Millisecond, proto.opts...)

			res, err := c.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{
				CustomerId: "alice",
				Items:      []*gatewayv2.CartItem{{ProductId: "sku-pear", Quantity: 2}, {ProductId: "sku-fig", Quantity: 1}},
			}))
			if err != nil {
				t.Fatalf("PlaceOrder: %v", err)
			}
			o := res.Msg.GetOrder()
			l := o.GetLineItems()[0]
			got := fmt.Sprintf("%s %s %d lines, %s %d x %d = %d, total %d %s",
				o.GetCustomerId(), o.GetStatus(), len(o.GetLineItems()), l.GetProductName(), l.GetQuantity(),
				l.GetUnitPrice().GetUnitsMinor(), l.GetLineTotal().GetUnitsMinor(), o.GetTotal().GetUnitsMinor(), o.GetTotal().GetCurrencyCode())
			if want := "spiffe://shop.example/user/alice ORDER_STATUS_CONFIRMED 2 lines, Pear 2 x 60 = 120, total 240 EUR"; got != want {
				t.Fatalf("order = %s, want %s", got, want)
			}
			if !strings.HasPrefix(o.GetId(), "ord_") || !strings.HasPrefix(o.GetPaymentId(), "pay_") || o.GetCreateTime() == nil || o.GetUpdateTime() == nil {
				t.Fatalf("order = %v", o)
			}

			gres, err := c.GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{OrderId: o.GetId()}))
			if err != nil || gres.Msg.GetOrder().GetId() != o.GetId() {
				t.Fatalf("GetOrder = %v, %v", gres, err)
			}

			stream, err := c.WatchOrder(ctx, connect.NewRequest(&gatewayv2.WatchOrderRequest{OrderId: o.GetId()}))
			if err != nil {
				t.Fatalf("WatchOrder: %v", err)
			}
			var statuses []gatewayv2.OrderStatus
			for stream.Receive() {
				statuses = append(statuses, stream.Msg().GetOrder().GetStatus())
			}
			if err := stream.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			all := []gatewayv2.OrderStatus{
				gatewayv2.OrderStatus_ORDER_STATUS_CONFIRMED,
				gatewayv2.OrderStatus_ORDER_STATUS_SHIPPED,
				gatewayv2.OrderStatus_ORDER_STATUS_DELIVERED,
			}
			if stream.Err() != nil || len(statuses) == 0 || fmt.Sprint(statuses) != fmt.Sprint(all[len(all)-len(statuses):]) {
				t.Fatalf("watch = %v, %v; want a suffix of %v", statuses, stream.Err(), all)
			}
		})
	}
}

// The unchanged methods keep v1's validation and downstream errors.
func TestV2Errors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newV2Shop(t, 0)
	_, err := c.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{CustomerId: "bob", Items: []*gatewayv2.CartItem{{ProductId: "sku-apple", Quantity: 1}}}))
	wantError(t, err, connect.CodePermissionDenied, `customer_id "bob" is not the caller spiffe://shop.example/user/alice: orders are placed for the caller`)
	_, err = c.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{CustomerId: "alice", Items: []*gatewayv2.CartItem{{ProductId: "sku-fig", Quantity: 21}}}))
	wantError(t, err, connect.CodeFailedPrecondition, `insufficient stock for product "sku-fig": requested 21, available 20`)
	_, err = c.GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{}))
	wantError(t, err, connect.CodeInvalidArgument, "validation error: order_id: value is required")
	_, err = c.GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{OrderId: "ord_nope"}))
	wantError(t, err, connect.CodeNotFound, `order "ord_nope" not found`)

	for _, id := range []string{"", "ord_nope"} {
		stream, err := c.WatchOrder(ctx, connect.NewRequest(&gatewayv2.WatchOrderRequest{OrderId: id}))
		if err != nil {
			t.Fatalf("WatchOrder: %v", err)
		}
		for stream.Receive() {
			t.Fatalf("WatchOrder(%q) sent %v", id, stream.Msg())
		}
		_ = stream.Close()
		if id == "" {
			wantError(t, stream.Err(), connect.CodeInvalidArgument, "validation error: order_id: value is required")
		} else {
			wantError(t, stream.Err(), connect.CodeNotFound, `order "ord_nope" not found`)
		}
	}
}

func TestNewV2PanicsOnNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r != "gateway: NewV2 called with nil Server" {
			t.Fatalf("recover() = %v", r)
		}
	}()
	gateway.NewV2(nil)
}

// v2 converts v1 orders field by field: the messages must keep the same
// fields and statuses, or the conversion would silently drop one. v2's
// unchanged methods are v1's handlers, so their requests must also keep
// the same rules (buf.validate options), or v2 would let through what v1's
// handler relies on being refused.
func TestV2OrderMatchesV1(t *testing.T) {
	t.Parallel()
	fields := func(md protoreflect.MessageDescriptor) string {
		var s []string
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			rules, err := protojson.Marshal(proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules))
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, fmt.Sprintf("%d:%s:%s:%s", fd.Number(), fd.Name(), fd.Kind(), rules))
		}
		return strings.Join(s, " ")
	}
	for _, pair := range [][2]protoreflect.MessageDescriptor{
		{(&gatewayv1.Order{}).ProtoReflect().Descriptor(), (&gatewayv2.Order{}).ProtoReflect().Descriptor()},
		{(&gatewayv1.LineItem{}).ProtoReflect().Descriptor(), (&gatewayv2.LineItem{}).ProtoReflect().Descriptor()},
		{(&gatewayv1.CartItem{}).ProtoReflect().Descriptor(), (&gatewayv2.CartItem{}).ProtoReflect().Descriptor()},
		{(&gatewayv1.PlaceOrderRequest{}).ProtoReflect().Descriptor(), (&gatewayv2.PlaceOrderRequest{}).ProtoReflect().Descriptor()},
		{(&gatewayv1.GetOrderRequest{}).ProtoReflect().Descriptor(), (&gatewayv2.GetOrderRequest{}).ProtoReflect().Descriptor()},
		{(&gatewayv1.WatchOrderRequest{}).ProtoReflect().Descriptor(), (&gatewayv2.WatchOrderRequest{}).ProtoReflect().Descriptor()},
	} {
		if v1, v2 := fields(pair[0]), fields(pair[1]); v1 != v2 {
			t.Errorf("%s fields = %s, v1 = %s", pair[1].FullName(), v2, v1)
		}
	}
	if fmt.Sprint(gatewayv1.OrderStatus_name) != fmt.Sprint(gatewayv2.OrderStatus_name) {
		t.Errorf("v2 statuses = %v, v1 = %v", gatewayv2.OrderStatus_name, gatewayv1.OrderStatus_name)
	}
}
