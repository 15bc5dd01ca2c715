package inventory_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/txn"
)

// Inventory records who a reservation is for: over mTLS, the subject of the
// transaction token that orders forwards (minted by the gateway, verified
// here) is on the log lines of Reserve and Release; the token is not.
func TestReserveLogsTheSubject(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	s, err := inventory.New(inventory.Config{}, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := m.ServeGRPC(meshtest.Inventory, func(r grpc.ServiceRegistrar) { inventoryv1.RegisterInventoryServiceServer(r, s) })
	client := inventoryv1.NewInventoryServiceClient(m.DialGRPC(addr, meshtest.Orders, meshtest.Inventory))
	tok := m.Token(meshtest.Gateway, meshtest.Alice, "/shop.gateway.v1.StorefrontService/PlaceOrder")
	ctx := txn.NewContext(context.Background(), tok) // as orders' handler has it

	if _, err := client.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: "ord_1", Items: []*inventoryv1.StockItem{item("sku-apple", 1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: "ord_1"}); err != nil {
		t.Fatal(err)
	}
	// A call without a token (an operator's, say) is logged without one.
	if _, err := client.Reserve(context.Background(), &inventoryv1.ReserveRequest{OrderId: "ord_2", Items: []*inventoryv1.StockItem{item("sku-apple", 1)}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{`msg="stock reserved"`, "order_id=ord_1", "subject=" + meshtest.Alice},
		{`msg="stock released"`, "order_id=ord_1", "subject=" + meshtest.Alice},
	} {
		if !log.HasLine(want...) {
			t.Errorf("no log line has %q:\n%s", want, log.String())
		}
	}
	if log.HasLine("order_id=ord_2", "subject=") {
		t.Errorf("a call without a token was logged with a subject:\n%s", log.String())
	}
	if sig := tok.Raw()[strings.LastIndexByte(tok.Raw(), '.')+1:]; strings.Contains(log.String(), sig) {
		t.Errorf("the log holds a transaction token:\n%s", log.String())
	}
}
