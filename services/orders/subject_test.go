package orders_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/txn"
)

const bob = "spiffe://shop.example/user/bob"

// recv reads a WatchOrder stream's first message, or its error.
func recv(stream interface {
	Recv() (*ordersv1.WatchOrderResponse, error)
}, err error) (*ordersv1.WatchOrderResponse, error) {
	if err != nil {
		return nil, err
	}
	res, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("stream ended without a message or an error")
	}
	return res, err
}

// An order belongs to the subject it was placed for: over mTLS, with the
// gateway's tokens verified as in the mesh, alice's order is hers (the
// customer is her SPIFFE ID, whether the request names it or not), and to
// bob it does not exist, with exactly the NotFound of an unknown order.
func TestOrdersServeTheirSubject(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	client := f.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	alice, bobCtx := f.as(ctx, meshtest.Alice), f.as(ctx, bob)

	for _, claimed := range []string{"", meshtest.Alice} {
		res, err := client.CreateOrder(alice, &ordersv1.CreateOrderRequest{CustomerId: claimed, Items: cart("sku-apple", 1)})
		if err != nil {
			t.Fatalf("CreateOrder(customer_id %q): %v", claimed, err)
		}
		if got := res.GetOrder().GetCustomerId(); got != meshtest.Alice {
			t.Errorf("CreateOrder(customer_id %q): customer %q, want %q", claimed, got, meshtest.Alice)
		}
	}
	reserved, _ := f.inv.calls()
	id := reserved[0]

	if _, err := client.GetOrder(alice, &ordersv1.GetOrderRequest{OrderId: id}); err != nil {
		t.Errorf("alice GetOrder(her order): %v", err)
	}
	if res, err := recv(client.WatchOrder(alice, &ordersv1.WatchOrderRequest{OrderId: id})); err != nil || res.GetOrder().GetId() != id {
		t.Errorf("alice WatchOrder(her order) = %v, %v", res, err)
	}
	_, err := client.GetOrder(bobCtx, &ordersv1.GetOrderRequest{OrderId: id})
	wantStatus(t, err, codes.NotFound, `order "`+id+`" not found`)
	_, err = recv(client.WatchOrder(bobCtx, &ordersv1.WatchOrderRequest{OrderId: id}))
	wantStatus(t, err, codes.NotFound, `order "`+id+`" not found`)

	// bob cannot place an order for alice by naming her.
	_, err = client.CreateOrder(bobCtx, &ordersv1.CreateOrderRequest{CustomerId: meshtest.Alice, Items: cart("sku-apple", 1)})
	wantStatus(t, err, codes.PermissionDenied,
		`customer_id "spiffe://shop.example/user/alice" is not the transaction's subject spiffe://shop.example/user/bob: orders are placed for the subject`)
	if after, _ := f.inv.calls(); len(after) != 2 {
		t.Errorf("inventory reserved for %v, want only alice's two orders", after)
	}
}

// Orders serves no one without a verified subject. Called directly, each
// method refuses a context without a transaction token; over mTLS (from
// the gateway's certificate) a call without one reaches the handler only
// on this test's allow-everything policy, and is refused there too, and a
// token that a workload other than the gateway signed is refused before
// the handler. No refused call reaches inventory.
func TestCallsWithoutSubjectAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	o, err := create(f, cart("sku-apple", 1))
	if err != nil {
		t.Fatal(err)
	}
	client := f.serve(t)
	const noSubject = "no verified subject: orders serves calls that carry a transaction token only"
	forged := f.m.Token(meshtest.Orders, meshtest.Alice, "/shop.gateway.v1.StorefrontService/PlaceOrder").Raw()

	calls := map[string]func(ctx context.Context, direct bool) error{
		"CreateOrder": func(ctx context.Context, direct bool) error {
			req := &ordersv1.CreateOrderRequest{Items: cart("sku-apple", 1)}
			if direct {
				_, err := f.srv.CreateOrder(ctx, req)
				return err
			}
			_, err := client.CreateOrder(ctx, req)
			return err
		},
		"GetOrder": func(ctx context.Context, direct bool) error {
			req := &ordersv1.GetOrderRequest{OrderId: o.GetId()}
			if direct {
				_, err := f.srv.GetOrder(ctx, req)
				return err
			}
			_, err := client.GetOrder(ctx, req)
			return err
		},
		"WatchOrder": func(ctx context.Context, direct bool) error {
			req := &ordersv1.WatchOrderRequest{OrderId: o.GetId()}
			if direct {
				_, err := recv(inproc.OrdersClient(f.srv).WatchOrder(ctx, req))
				return err
			}
			_, err := recv(client.WatchOrder(ctx, req))
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			wantStatus(t, call(ctx, true), codes.Unauthenticated, noSubject)
			wantStatus(t, call(ctx, false), codes.Unauthenticated, noSubject)
			err := call(metadata.AppendToOutgoingContext(ctx, txn.MetadataKey, forged), false)
			if st := status.Convert(err); st.Code() != codes.Unauthenticated ||
				!strings.HasPrefix(st.Message(), "invalid transaction token: txn: signer not a minter: ") {
				t.Errorf("token signed by orders: %v, want Unauthenticated invalid transaction token: txn: signer not a minter", err)
			}
		})
	}
	if reserved, _ := f.inv.calls(); len(reserved) != 1 {
		t.Errorf("inventory reserved for %v, want only the first order", reserved)
	}
}
