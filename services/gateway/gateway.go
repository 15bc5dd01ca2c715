package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/services/internal/input"
)

// DefaultMaxItems is the most line items one order may have by default.
const DefaultMaxItems = 50

// MaxIDBytes is the longest customer, product or order ID that the gateway
// accepts, in bytes: a longer one is InvalidArgument.
const MaxIDBytes = input.MaxIDBytes

// Config configures a [Server].
type Config struct {
	// MaxItems is the most line items PlaceOrder accepts in one order; more is
	// InvalidArgument. By default (zero or negative), [DefaultMaxItems].
	MaxItems int
}

// Server implements [gatewayv1connect.StorefrontServiceHandler] on top of the
// orders and inventory services. Create it with [New], and serve it with
// the request rules enforced (validation.Connect): its methods rely on
// them.
type Server struct {
	maxItems int
	orders   ordersv1.OrderServiceClient
	inv      inventoryv1.InventoryServiceClient
	log      *slog.Logger
}

var _ gatewayv1connect.StorefrontServiceHandler = (*Server)(nil)

// New returns a Server that forwards to orders and inv. A nil log discards
// log output.
func New(cfg Config, orders ordersv1.OrderServiceClient, inv inventoryv1.InventoryServiceClient, log *slog.Logger) (*Server, error) {
	switch {
	case orders == nil:
		return nil, errors.New("gateway: nil orders client")
	case inv == nil:
		return nil, errors.New("gateway: nil inventory client")
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = DefaultMaxItems
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{maxItems: cfg.MaxItems, orders: orders, inv: inv, log: log}, nil
}

// ListProducts returns inventory's catalogue. It has no side effects, so
// Connect clients may call it with GET.
func (s *Server) ListProducts(ctx context.Context, _ *connect.Request[gatewayv1.ListProductsRequest]) (*connect.Response[gatewayv1.ListProductsResponse], error) {
	res, err := s.inv.ListProducts(ctx, &inventoryv1.ListProductsRequest{})
	if err != nil {
		return nil, downstreamError(ctx, s.log, "inventory.ListProducts", err)
	}
	products := make([]*gatewayv1.Product, 0, len(res.GetProducts()))
	for _, p := range res.GetProducts() {
		products = append(products, &gatewayv1.Product{
			Id:                p.GetId(),
			Name:              p.GetName(),
			Price:             proto.CloneOf(p.GetPrice()),
			AvailableQuantity: p.GetAvailableQuantity(),
		})
	}
	return connect.NewResponse(&gatewayv1.ListProductsResponse{Products: products}), nil
}

// PlaceOrder creates the order with the orders service, for the caller. More
// than the configured most items is InvalidArgument. The request keeps the
// proto's rules (see services/internal/validation): a customer_id of at
// most [MaxIDBytes] bytes (it may be empty), at least one item, each
// product at most once, product IDs of 1 to [MaxIDBytes] bytes, positive
// quantities.
func (s *Server) PlaceOrder(ctx context.Context, req *connect.Request[gatewayv1.PlaceOrderRequest]) (*connect.Response[gatewayv1.PlaceOrderResponse], error) {
	msg := req.Msg
	if err := s.validatePlace(msg); err != nil {
		return nil, err
	}
	who, err := customer(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkClaimedCustomer(msg.GetCustomerId(), who); err != nil {
		return nil, err
	}
	items := make([]*ordersv1.CartItem, 0, len(msg.GetItems()))
	for _, item := range msg.GetItems() {
		items = append(items, &ordersv1.CartItem{ProductId: item.GetProductId(), Quantity: item.GetQuantity()})
	}
	res, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: who.String(), Items: items})
	if err != nil {
		return nil, downstreamError(ctx, s.log, "orders.CreateOrder", err)
	}
	return connect.NewResponse(&gatewayv1.PlaceOrderResponse{Order: ToStorefront(res.GetOrder())}), nil
}

// validatePlace checks what the proto's rules cannot: the configured most
// items per order.
func (s *Server) validatePlace(msg *gatewayv1.PlaceOrderRequest) error {
	if n := len(msg.GetItems()); n > s.maxItems {
		return invalid(fmt.Sprintf("items: at most %d items per order, got %d", s.maxItems, n))
	}
	return nil
}

// GetOrder returns the caller's order from the orders service; another
// customer's order is NotFound, like one that does not exist. The order ID
// has 1 to [MaxIDBytes] bytes (the proto's rule). It has no side effects,
// so Connect clients may call it with GET.
func (s *Server) GetOrder(ctx context.Context, req *connect.Request[gatewayv1.GetOrderRequest]) (*connect.Response[gatewayv1.GetOrderResponse], error) {
	who, err := customer(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: req.Msg.GetOrderId()})
	if err != nil {
		return nil, downstreamError(ctx, s.log, "orders.GetOrder", err)
	}
	if err := checkOwner(res.GetOrder(), who, req.Msg.GetOrderId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&gatewayv1.GetOrderResponse{Order: ToStorefront(res.GetOrder())}), nil
}

// WatchOrder relays the orders service's stream of the order's states. It
// ends when that stream ends, and the caller's cancellation ends that stream.
// The order ID has 1 to [MaxIDBytes] bytes (the proto's rule).
func (s *Server) WatchOrder(ctx context.Context, req *connect.Request[gatewayv1.WatchOrderRequest], stream *connect.ServerStream[gatewayv1.WatchOrderResponse]) error {
	return s.watch(ctx, req.Msg.GetOrderId(), func(o *ordersv1.Order) error {
		return stream.Send(&gatewayv1.WatchOrderResponse{Order: ToStorefront(o)})
	})
}

// watch relays the states of the caller's order orderID to send.
func (s *Server) watch(ctx context.Context, orderID string, send func(*ordersv1.Order) error) error {
	who, err := customer(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the downstream stream if we stop first
	upstream, err := s.orders.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: orderID})
	if err != nil {
		return downstreamError(ctx, s.log, "orders.WatchOrder", err)
	}
	for {
		res, err := upstream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return downstreamError(ctx, s.log, "orders.WatchOrder", err)
		}
		if err := checkOwner(res.GetOrder(), who, orderID); err != nil {
			return err
		}
		if err := send(res.GetOrder()); err != nil {
			return err
		}
	}
}

// ToStorefront converts an order of the orders service to the storefront's,
// as the gateway answers it (nil for nil).
func ToStorefront(o *ordersv1.Order) *gatewayv1.Order {
	if o == nil {
		return nil
	}
	items := make([]*gatewayv1.LineItem, 0, len(o.GetLineItems()))
	for _, l := range o.GetLineItems() {
		items = append(items, &gatewayv1.LineItem{
			ProductId:   l.GetProductId(),
			ProductName: l.GetProductName(),
			Quantity:    l.GetQuantity(),
			UnitPrice:   proto.CloneOf(l.GetUnitPrice()),
			LineTotal:   proto.CloneOf(l.GetLineTotal()),
		})
	}
	return &gatewayv1.Order{
		Id:           o.GetId(),
		CustomerId:   o.GetCustomerId(),
		LineItems:    items,
		Total:        proto.CloneOf(o.GetTotal()),
		Status:       toGatewayStatus(o.GetStatus()),
		StatusReason: o.GetStatusReason(),
		PaymentId:    o.GetPaymentId(),
		CreateTime:   proto.CloneOf(o.GetCreateTime()),
		UpdateTime:   proto.CloneOf(o.GetUpdateTime()),
	}
}

// toGatewayStatus maps an orders status to the storefront's by name, so that
// a status the gateway does not know yet becomes UNSPECIFIED rather than a
// different status.
func toGatewayStatus(st ordersv1.OrderStatus) gatewayv1.OrderStatus {
	if v, ok := gatewayv1.OrderStatus_value[st.String()]; ok {
		return gatewayv1.OrderStatus(v)
	}
	return gatewayv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
}
