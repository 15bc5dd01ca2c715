package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// storefrontCall is one call a person makes to the v1 storefront.
type storefrontCall struct {
	name string
	call func(context.Context, gatewayv1connect.StorefrontServiceClient) error
}

var storefrontCalls = []storefrontCall{
	{"ListProducts", func(ctx context.Context, c gatewayv1connect.StorefrontServiceClient) error {
		_, err := c.ListProducts(ctx, connect.NewRequest(&gatewayv1.ListProductsRequest{}))
		return err
	}},
	{"PlaceOrder", func(ctx context.Context, c gatewayv1connect.StorefrontServiceClient) error {
		_, err := c.PlaceOrder(ctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: cart("sku-apple", 1)}))
		return err
	}},
	{"GetOrder", func(ctx context.Context, c gatewayv1connect.StorefrontServiceClient) error {
		_, err := c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: "ord_1"}))
		return err
	}},
	{"WatchOrder", func(ctx context.Context, c gatewayv1connect.StorefrontServiceClient) error {
		return drain(c.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: "ord_1"})))
	}},
}

// wantGeneric fails the test unless err is code with exactly msg, which
// names no address, port or SPIFFE ID.
func wantGeneric(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != code || ce.Message() != msg {
		t.Fatalf("error = %v, want %v %q", err, code, msg)
	}
	for _, leak := range []string{"127.0.0.1", "spiffe://", "dial", "tcp"} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("error %q tells the caller %q", err, leak)
		}
	}
}

// wantLogged fails the test unless, for each of the n calls whose server
// spans traces recorded, the log has a "downstream call failed" line with
// the call's trace ID and every one of causes.
func wantLogged(t *testing.T, log *meshtest.Log, traces *meshtest.Traces, n int, causes ...string) {
	t.Helper()
	for _, id := range traces.WaitServerTraceIDs(t, n) {
		if !log.HasLine(append([]string{`msg="downstream call failed"`, "trace_id=" + id}, causes...)...) {
			t.Errorf("no log line with trace_id=%s says %q; log:\n%s", id, causes, log.String())
		}
	}
}

// With orders and inventory down (nothing listens on their ports), a
// person over mTLS, on gRPC and on Connect, reads "orders unavailable" or
// "inventory unavailable", never the dial error (which named the address);
// the gateway's log has the dial error with the call's trace ID.
func TestDownstreamDown(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	traces := meshtest.NewTraces(t)
	creds := m.Credentials(meshtest.Gateway)
	ord := ordersv1.NewOrderServiceClient(m.DialGRPCWith(creds, meshtest.ClosedAddr(t), meshtest.Orders))
	inv := inventoryv1.NewInventoryServiceClient(m.DialGRPCWith(creds, meshtest.ClosedAddr(t), meshtest.Inventory))
	srv, err := gateway.New(gateway.Config{}, ord, inv, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGateway(t, m, srv, mesh.WithLogger(log.Logger), traces.ServerOption())
	hc := m.HTTPClient(meshtest.Alice, meshtest.Gateway)

	calls := 0
	for _, protocol := range protocols {
		c := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, protocol.opts...)
		for _, sc := range storefrontCalls {
			t.Run(protocol.name+"/"+sc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
				defer cancel()
				want := "orders unavailable"
				if sc.name == "ListProducts" {
					want = "inventory unavailable"
				}
				wantGeneric(t, sc.call(ctx, c), connect.CodeUnavailable, want)
			})
			calls++
		}
	}
	wantLogged(t, log, traces, calls, "connect: connection refused")
}

// A misrouted hop, the gateway's orders client reaching a server with
// another SPIFFE ID than it expects, is refused at the handshake; the
// person reads "orders unavailable", not the refusal (which named both
// SPIFFE IDs), and the gateway's log has the refusal with the trace ID.
func TestMisroutedHop(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	traces := meshtest.NewTraces(t)
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := inproc.InventoryClient(invSrv)
	ordSrv, err := orders.New(orders.Config{}, inv, payments.New(payments.Config{}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ordSrv.Close() })
	ordAddr := m.ServeGRPC(meshtest.Orders, func(r grpc.ServiceRegistrar) { ordersv1.RegisterOrderServiceServer(r, ordSrv) })
	// The orders client expects payments' ID at orders' address.
	ord := ordersv1.NewOrderServiceClient(m.DialGRPCWith(m.Credentials(meshtest.Gateway), ordAddr, meshtest.Payments))
	srv, err := gateway.New(gateway.Config{}, ord, inv, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGateway(t, m, srv, mesh.WithLogger(log.Logger), traces.ServerOption())
	hc := m.HTTPClient(meshtest.Alice, meshtest.Gateway)

	calls := 0
	for _, protocol := range protocols {
		c := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, protocol.opts...)
		for _, sc := range storefrontCalls[1:] { // ListProducts goes to inventory, which is not misrouted
			t.Run(protocol.name+"/"+sc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
				defer cancel()
				wantGeneric(t, sc.call(ctx, c), connect.CodeUnavailable, "orders unavailable")
			})
			calls++
		}
	}
	wantLogged(t, log, traces, calls, "not authorized: want", meshtest.Payments)
}
