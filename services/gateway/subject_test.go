package gateway_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
	"github.com/trustmesh/trustmesh/txn"
)

// subjects records, per orders method, the verified subject each call
// carried ("<none>" for a call without a token).
type subjects struct {
	mu  sync.Mutex
	got []string
}

func (s *subjects) record(ctx context.Context, method string) {
	sub := "<none>"
	if tok, ok := txn.FromContext(ctx); ok {
		sub = tok.Subject().String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, method[strings.LastIndexByte(method, '/')+1:]+" "+sub)
}

func (s *subjects) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	slices.Sort(got)
	return got
}

// The gateway calls orders on behalf of its caller: every call it makes to
// orders, from every method of both storefronts, carries the transaction
// token the gateway minted for the person who called it, forwarded by its
// mesh client over mTLS and verified by orders. Orders then keeps each
// person's orders to that person.
func TestGatewayCallsOrdersForItsCaller(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := inproc.InventoryClient(invSrv)
	// A short step, so that watches end DELIVERED.
	ordSrv, err := orders.New(orders.Config{StepInterval: time.Millisecond}, inv, payments.New(payments.Config{}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ordSrv.Close() })
	rec := &subjects{}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		rec.record(ctx, info.FullMethod)
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		rec.record(ss.Context(), info.FullMethod)
		return h(srv, ss)
	}
	ordAddr := m.ServeGRPC(meshtest.Orders, func(r grpc.ServiceRegistrar) { ordersv1.RegisterOrderServiceServer(r, ordSrv) },
		mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{unary}, []grpc.StreamServerInterceptor{stream}))
	ord := ordersv1.NewOrderServiceClient(m.DialGRPCWith(m.Credentials(meshtest.Gateway), ordAddr, meshtest.Orders))
	srv, err := gateway.New(gateway.Config{}, ord, inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGateway(t, m, srv)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	v1 := gatewayv1connect.NewStorefrontServiceClient(m.HTTPClient(meshtest.Alice, meshtest.Gateway), "https://"+addr, connect.WithGRPC())
	placed, err := v1.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: cart("sku-apple", 1)}))
	if err != nil {
		t.Fatalf("v1 PlaceOrder: %v", err)
	}
	id := placed.Msg.GetOrder().GetId()
	if got := placed.Msg.GetOrder().GetCustomerId(); got != meshtest.Alice {
		t.Errorf("customer = %q, want %q", got, meshtest.Alice)
	}
	if _, err := v1.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: id})); err != nil {
		t.Errorf("v1 GetOrder: %v", err)
	}
	if err := drain(v1.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: id}))); err != nil {
		t.Errorf("v1 WatchOrder: %v", err)
	}
	v2 := gatewayv2connect.NewStorefrontServiceClient(m.HTTPClient(meshtest.Alice, meshtest.Gateway), "https://"+addr)
	if _, err := v2.GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{OrderId: id})); err != nil {
		t.Errorf("v2 GetOrder: %v", err)
	}
	if err := drain(v2.WatchOrder(ctx, connect.NewRequest(&gatewayv2.WatchOrderRequest{OrderId: id}))); err != nil {
		t.Errorf("v2 WatchOrder: %v", err)
	}
	if _, err := v2.PlaceOrder(ctx, connect.NewRequest(&gatewayv2.PlaceOrderRequest{Items: []*gatewayv2.CartItem{{ProductId: "sku-pear", Quantity: 1}}})); err != nil {
		t.Errorf("v2 PlaceOrder: %v", err)
	}
	alice := " " + meshtest.Alice
	want := []string{"CreateOrder" + alice, "CreateOrder" + alice, "GetOrder" + alice, "GetOrder" + alice, "WatchOrder" + alice, "WatchOrder" + alice}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("orders saw calls %q, want %q", got, want)
	}

	// bob, through the same gateway: orders sees bob, and alice's order
	// is not found for him.
	bob := gatewayv1connect.NewStorefrontServiceClient(m.HTTPClient("spiffe://shop.example/user/bob", meshtest.Gateway), "https://"+addr)
	_, err = bob.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: id}))
	wantError(t, err, connect.CodeNotFound, `order "`+id+`" not found`)
	if got, want := rec.take(), []string{"GetOrder spiffe://shop.example/user/bob"}; !slices.Equal(got, want) {
		t.Errorf("orders saw calls %q, want %q", got, want)
	}
}
