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
	"google.golang.org/grpc/metadata"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

// loadClient calls one server's ListProducts over several connections, as
// the gateway does: the same grpc-go client for every configuration (the
// connect-go servers answer it in the gRPC protocol), so that only the
// servers differ.
type loadClient struct {
	conns   []*grpc.ClientConn
	clients []inventoryv1.InventoryServiceClient
	// propagate sends a sampled W3C traceparent (a fresh trace per call)
	// and the caller chain in baggage, as a traced mesh caller does.
	propagate bool
}

func dialLoad(addr string, creds mesh.Credentials, conns int, propagate bool) (*loadClient, error) {
	c := &loadClient{propagate: propagate}
	for range conns {
		conn, err := mesh.DialGRPC(addr, creds, spiffeid.RequireFromString(inventoryID))
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, conn)
		c.clients = append(c.clients, inventoryv1.NewInventoryServiceClient(conn))
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

func (c *loadClient) call(ctx context.Context, i int) error {
	if c.propagate {
		var ids [24]byte
		for j := 0; j < len(ids); j += 8 {
			v := rand.Uint64()
			for k := range 8 {
				ids[j+k] = byte(v >> (8 * k))
			}
		}
		tp := "00-" + hex.EncodeToString(ids[:16]) + "-" + hex.EncodeToString(ids[16:]) + "-01"
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp, "baggage", chainBaggage)
	}
	_, err := c.clients[i%len(c.clients)].ListProducts(ctx, &inventoryv1.ListProductsRequest{})
	return err
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
		wg.Go(func() {
			for next.Add(1) <= int64(calls) {
				if err := c.call(ctx, w); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, fmt.Errorf("meshbench: ListProducts: %w", first)
	}
	return time.Since(start), nil
}

// latencies makes n calls one after the other and returns each one's
// latency.
func (c *loadClient) latencies(ctx context.Context, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := c.call(ctx, 0); err != nil {
			return nil, fmt.Errorf("meshbench: ListProducts: %w", err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
