package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

// loadClient makes one workload's calls to one server over several
// connections: the same grpc-go client (a mesh client, which checks the
// server's SPIFFE ID) for every configuration, so that only the servers
// differ (connect-go servers answer it in the gRPC protocol).
type loadClient struct {
	method string // for errors: "ListProducts"
	conns  []*grpc.ClientConn
	calls  []func(context.Context) error // one per connection
}

// placeOrderProduct is what every PlaceOrder orders, one unit at a time:
// the inventory is restocked with enough of it before the runs.
const placeOrderProduct = "sku-apple"

// dialLoad connects conns times to addr as creds, expecting the server
// server, for workload wl. propagate (ListProducts only) sends a sampled
// W3C traceparent (a fresh trace per call) and the caller chain in
// baggage, as a traced mesh caller does; a health probe and a person
// calling the edge send neither.
func dialLoad(addr string, creds mesh.Credentials, server spiffeid.ID, wl string, conns int, propagate bool) (*loadClient, error) {
	c := &loadClient{}
	for range conns {
		conn, err := mesh.DialGRPC(addr, creds, server)
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, conn)
		switch wl {
		case workloadList:
			c.method = "ListProducts"
			inv := inventoryv1.NewInventoryServiceClient(conn)
			c.calls = append(c.calls, func(ctx context.Context) error {
				if propagate {
					ctx = withTraceContext(ctx)
				}
				_, err := inv.ListProducts(ctx, &inventoryv1.ListProductsRequest{})
				return err
			})
		case workloadHealth:
			c.method = "Health/Check"
			hc := healthpb.NewHealthClient(conn)
			c.calls = append(c.calls, func(ctx context.Context) error {
				res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				if err == nil && res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					err = fmt.Errorf("status %s, want SERVING", res.GetStatus())
				}
				return err
			})
		case workloadPlaceOrder:
			c.method = "PlaceOrder"
			sf := gatewayv1.NewStorefrontServiceClient(conn)
			req := &gatewayv1.PlaceOrderRequest{Items: []*gatewayv1.CartItem{{ProductId: placeOrderProduct, Quantity: 1}}}
			c.calls = append(c.calls, func(ctx context.Context) error {
				res, err := sf.PlaceOrder(ctx, req)
				if err == nil && res.GetOrder().GetStatus() != gatewayv1.OrderStatus_ORDER_STATUS_CONFIRMED {
					err = fmt.Errorf("order %s, want CONFIRMED", res.GetOrder().GetStatus())
				}
				return err
			})
		default:
			c.close()
			return nil, fmt.Errorf("meshbench: unknown workload %q", wl)
		}
	}
	return c, nil
}

func (c *loadClient) close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// chainBaggage is the baggage of a call the gateway makes for alice.
const chainBaggage = "trustmesh.chain=spiffe://shop.example/user/alice%2Cspiffe://shop.example/ns/shop/sa/gateway"

// withTraceContext adds to ctx's outgoing metadata a sampled traceparent
// of a new trace and the caller chain in baggage.
func withTraceContext(ctx context.Context) context.Context {
	var ids [24]byte
	for j := 0; j < len(ids); j += 8 {
		v := rand.Uint64()
		for k := range 8 {
			ids[j+k] = byte(v >> (8 * k))
		}
	}
	tp := "00-" + hex.EncodeToString(ids[:16]) + "-" + hex.EncodeToString(ids[16:]) + "-01"
	return metadata.AppendToOutgoingContext(ctx, "traceparent", tp, "baggage", chainBaggage)
}

// run makes calls calls with concurrency callers (caller i on connection
// i mod conns) and returns how long they took.
func (c *loadClient) run(ctx context.Context, calls, concurrency int) (time.Duration, error) {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for w := range concurrency {
		call := c.calls[w%len(c.calls)]
		wg.Go(func() {
			for next.Add(1) <= int64(calls) {
				if err := call(ctx); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, fmt.Errorf("meshbench: %s: %w", c.method, first)
	}
	return time.Since(start), nil
}

// latencies makes n calls one after the other and returns each one's
// latency.
func (c *loadClient) latencies(ctx context.Context, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := c.calls[0](ctx); err != nil {
			return nil, fmt.Errorf("meshbench: %s: %w", c.method, err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// restock adds quantity units of the product PlaceOrder orders to the
// inventory at addr, as the operator (whom the sample's policy lets
// restock), so that no order of the run finds it out of stock.
func restock(ctx context.Context, addr string, admin mesh.Credentials, quantity int64) error {
	conn, err := mesh.DialGRPC(addr, admin, spiffeid.RequireFromString(inventoryID))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := inventoryv1.NewInventoryServiceClient(conn).Restock(ctx, &inventoryv1.RestockRequest{ProductId: placeOrderProduct, Quantity: quantity}); err != nil {
		return fmt.Errorf("meshbench: restock %s at %s: %w", placeOrderProduct, addr, err)
	}
	return nil
}
