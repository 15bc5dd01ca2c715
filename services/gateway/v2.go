package gateway

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
)

const (
	// DefaultPageSize is the number of products a v2 ListProducts page has
	// when the request's page_size is zero.
	DefaultPageSize = 50
	// MaxPageSize is the most products a v2 ListProducts page has; a larger
	// page_size is treated as MaxPageSize.
	MaxPageSize = 100
)

// pageTokenPrefix starts every decoded page token, so that a product ID
// passed as a token, or a token of another API, is refused rather than
// silently misread.
const pageTokenPrefix = "gateway.v2/after:"

// maxPageTokenBytes is the length of the longest page token ListProducts
// returns, the one after a product ID of [MaxIDBytes] bytes (inventory
// refuses longer ones); a longer token is refused without decoding it.
const maxPageTokenBytes = ((len(pageTokenPrefix)+MaxIDBytes)*8 + 5) / 6 // base64.RawURLEncoding.EncodedLen

// V2Server implements [gatewayv2connect.StorefrontServiceHandler],
// shop.gateway.v2.StorefrontService. It differs from v1 in ListProducts
// only, which returns the catalogue in pages; the other methods are v1's,
// with v1's validation, errors and downstream clients. Create it with
// [NewV2].
type V2Server struct {
	v1 *Server
}

var _ gatewayv2connect.StorefrontServiceHandler = (*V2Server)(nil)

// NewV2 returns the v2 storefront on top of s: it shares s's orders and
// inventory clients, its limits and its logger. It panics if s is nil.
func NewV2(s *Server) *V2Server {
	if s == nil {
		panic("gateway: NewV2 called with nil Server")
	}
	return &V2Server{v1: s}
}

// ListProducts returns one page of inventory's catalogue, ordered by
// product ID. The page token holds the ID of the last product of the page
// it follows, so the next page starts after that product even if products
// were added or removed in between. A page token longer than any that
// ListProducts returns is InvalidArgument, like any other token it did not
// return. page_size is not negative (the proto's rule). It has no side
// effects, so Connect clients may call it with GET.
func (v *V2Server) ListProducts(ctx context.Context, req *connect.Request[gatewayv2.ListProductsRequest]) (*connect.Response[gatewayv2.ListProductsResponse], error) {
	size := int(req.Msg.GetPageSize())
	switch {
	case size <= 0: // zero; a negative size breaks the proto's rule and is refused before the handler
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := decodePageToken(req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res, err := v.v1.inv.ListProducts(ctx, &inventoryv1.ListProductsRequest{})
	if err != nil {
		return nil, downstreamError(ctx, v.v1.log, "inventory.ListProducts", err)
	}
	all := slices.SortedFunc(slices.Values(res.GetProducts()), func(a, b *inventoryv1.Product) int {
		return strings.Compare(a.GetId(), b.GetId())
	})
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(all, after, func(p *inventoryv1.Product, id string) int {
			return strings.Compare(p.GetId(), id)
		})
		if start < len(all) && all[start].GetId() == after {
			start++
		}
	}
	end := min(start+size, len(all))
	out := &gatewayv2.ListProductsResponse{Products: make([]*gatewayv2.Product, 0, end-start)}
	for _, p := range all[start:end] {
		out.Products = append(out.Products, &gatewayv2.Product{
			Id:                p.GetId(),
			Name:              p.GetName(),
			Price:             proto.CloneOf(p.GetPrice()),
			AvailableQuantity: p.GetAvailableQuantity(),
		})
	}
	if end < len(all) {
		out.NextPageToken = encodePageToken(all[end-1].GetId())
	}
	return connect.NewResponse(out), nil
}

func encodePageToken(afterID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + afterID))
}

// decodePageToken returns the product ID a page token points after; "" for
// the first page.
func decodePageToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	if len(token) > maxPageTokenBytes {
		return "", invalid("page_token: not a token returned by ListProducts")
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	after, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if err != nil || !ok || after == "" {
		return "", invalid("page_token: not a token returned by ListProducts")
	}
	return after, nil
}

// PlaceOrder is v1's PlaceOrder.
func (v *V2Server) PlaceOrder(ctx context.Context, req *connect.Request[gatewayv2.PlaceOrderRequest]) (*connect.Response[gatewayv2.PlaceOrderResponse], error) {
	items := make([]*gatewayv1.CartItem, 0, len(req.Msg.GetItems()))
	for _, item := range req.Msg.GetItems() {
		items = append(items, &gatewayv1.CartItem{ProductId: item.GetProductId(), Quantity: item.GetQuantity()})
	}
	res, err := v.v1.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: req.Msg.GetCustomerId(), Items: items}))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&gatewayv2.PlaceOrderResponse{Order: toV2(res.Msg.GetOrder())}), nil
}

// GetOrder is v1's GetOrder.
func (v *V2Server) GetOrder(ctx context.Context, req *connect.Request[gatewayv2.GetOrderRequest]) (*connect.Response[gatewayv2.GetOrderResponse], error) {
	res, err := v.v1.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: req.Msg.GetOrderId()}))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&gatewayv2.GetOrderResponse{Order: toV2(res.Msg.GetOrder())}), nil
}

// WatchOrder is v1's WatchOrder: it relays the orders service's stream of
// the caller's order's states, which the caller's cancellation ends.
func (v *V2Server) WatchOrder(ctx context.Context, req *connect.Request[gatewayv2.WatchOrderRequest], stream *connect.ServerStream[gatewayv2.WatchOrderResponse]) error {
	return v.v1.watch(ctx, req.Msg.GetOrderId(), func(o *ordersv1.Order) error {
		return stream.Send(&gatewayv2.WatchOrderResponse{Order: toV2(ToStorefront(o))})
	})
}

// toV2 converts a v1 storefront order to v2's, whose fields are the same. It
// takes over o's Money and Timestamp values (their types are shared by both
// versions), so o must not be used afterwards.
func toV2(o *gatewayv1.Order) *gatewayv2.Order {
	if o == nil {
		return nil
	}
	items := make([]*gatewayv2.LineItem, 0, len(o.GetLineItems()))
	for _, l := range o.GetLineItems() {
		items = append(items, &gatewayv2.LineItem{
			ProductId:   l.GetProductId(),
			ProductName: l.GetProductName(),
			Quantity:    l.GetQuantity(),
			UnitPrice:   l.GetUnitPrice(),
			LineTotal:   l.GetLineTotal(),
		})
	}
	return &gatewayv2.Order{
		Id:           o.GetId(),
		CustomerId:   o.GetCustomerId(),
		LineItems:    items,
		Total:        o.GetTotal(),
		Status:       toV2Status(o.GetStatus()),
		StatusReason: o.GetStatusReason(),
		PaymentId:    o.GetPaymentId(),
		CreateTime:   o.GetCreateTime(),
		UpdateTime:   o.GetUpdateTime(),
	}
}

// toV2Status maps a v1 status to v2's by name, like [toGatewayStatus].
func toV2Status(st gatewayv1.OrderStatus) gatewayv2.OrderStatus {
	if n, ok := gatewayv2.OrderStatus_value[st.String()]; ok {
		return gatewayv2.OrderStatus(n)
	}
	return gatewayv2.OrderStatus_ORDER_STATUS_UNSPECIFIED
}
