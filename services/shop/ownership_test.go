package shop_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/services/shop"
)

// TestOrdersBelongToTheirCaller: the gateway places orders for the verified
// caller, whatever customer_id claims, and shows an order only to the person
// who placed it (to others it does not exist).
func TestOrdersBelongToTheirCaller(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	ca, err := certs.LoadCA(m.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/user/bob")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certs.WriteSVID(m.CertDir, "bob", svid); err != nil {
		t.Fatal(err)
	}
	alice := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "alice", shop.Gateway))
	bob := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "bob", shop.Gateway))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cart := []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}

	placed, err := alice.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{Items: cart}) // customer_id is optional
	if err != nil {
		t.Fatalf("alice PlaceOrder: %v", err)
	}
	id := placed.GetOrder().GetId()
	if got := placed.GetOrder().GetCustomerId(); got != "spiffe://shop.example/user/alice" {
		t.Errorf("customer = %q, want alice's SPIFFE ID", got)
	}
	if _, err := alice.GetOrder(ctx, &gatewayv1.GetOrderRequest{OrderId: id}); err != nil {
		t.Errorf("alice GetOrder(own order): %v", err)
	}

	notFound := `order "` + id + `" not found`
	_, err = bob.GetOrder(ctx, &gatewayv1.GetOrderRequest{OrderId: id})
	if codeOf(err) != codes.NotFound || !strings.Contains(err.Error(), notFound) {
		t.Errorf("bob GetOrder(alice's order): %v, want NotFound %q", err, notFound)
	}
	stream, err := bob.WatchOrder(ctx, &gatewayv1.WatchOrderRequest{OrderId: id})
	if err == nil {
		var msg *gatewayv1.WatchOrderResponse
		msg, err = stream.Recv()
		if err == nil {
			t.Errorf("bob WatchOrder(alice's order) received %v", msg)
		} else if err == io.EOF {
			t.Error("bob WatchOrder(alice's order) ended without an error")
		}
	}
	if codeOf(err) != codes.NotFound {
		t.Errorf("bob WatchOrder(alice's order): %v, want NotFound", err)
	}
	_, err = bob.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice", Items: cart})
	if codeOf(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `customer_id "alice" is not the caller spiffe://shop.example/user/bob`) {
		t.Errorf("bob PlaceOrder for alice: %v, want PermissionDenied", err)
	}
}
