package inventory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
)

// maxMessage bounds the message of a refused oversized field, whatever the
// field's length: far below any client's header limit (16 KiB for grpcio).
const maxMessage = 256

// An oversized ID, sent over mTLS as orders or the operator would, is
// refused at once with InvalidArgument and a short message that repeats
// nothing of it (a 1 MB one came back whole in grpc-message, over every
// client's header limit), and nothing of it reaches the log.
func TestLongIDsAreRefused(t *testing.T) {
	t.Parallel()
	log := meshtest.NewLog()
	impl, err := inventory.New(inventory.Config{}, log.Logger)
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, impl, mesh.WithLogger(log.Logger))

	for _, n := range []int{1 << 20, 200 << 10} {
		long := strings.Repeat("x", n)
		testCases := []struct {
			name string
			call func(context.Context) error
			msg  string
		}{
			{"Reserve order_id", func(ctx context.Context) error {
				_, err := client.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: long, Items: []*inventoryv1.StockItem{item("sku-apple", 1)}})
				return err
			}, "validation error: order_id: must be at most 128 bytes"},
			{"Reserve product_id", func(ctx context.Context) error {
				_, err := client.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 1), item(long, 1)}})
				return err
			}, "validation error: items[1].product_id: must be at most 128 bytes"},
			{"Release order_id", func(ctx context.Context) error {
				_, err := client.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: long})
				return err
			}, "validation error: order_id: must be at most 128 bytes"},
			{"Restock product_id", func(ctx context.Context) error {
				_, err := client.Restock(ctx, &inventoryv1.RestockRequest{ProductId: long, Quantity: 1})
				return err
			}, "validation error: product_id: must be at most 128 bytes"},
		}
		for _, tc := range testCases {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := tc.call(ctx)
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument || st.Message() != tc.msg {
					t.Fatalf("error = %v %.200q, want InvalidArgument %q", st.Code(), st.Message(), tc.msg)
				}
				if len(st.Message()) > maxMessage {
					t.Fatalf("message of %d bytes, want at most %d", len(st.Message()), maxMessage)
				}
			})
		}
	}
	if got := log.String(); strings.Contains(got, strings.Repeat("x", input.ClipBytes+1)) {
		t.Fatalf("the log holds more than %d bytes of an oversized ID:\n%.1000s", input.ClipBytes, got)
	}
	if s := stock(t, impl); s["sku-apple"] != 100 {
		t.Fatalf("stock = %v, want the 100 apples untouched", s)
	}
}

// The catalogue's IDs and names are bounded like the IDs callers send, so
// that every product can be reserved.
func TestNewRejectsLongCatalogueEntries(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", input.MaxIDBytes+1)
	testCases := []struct {
		name    string
		product *inventoryv1.Product
		want    string
	}{
		{"long id", &inventoryv1.Product{Id: long, Name: "A", Price: eur(1)},
			"inventory: catalogue[0]: validation error: id: must be at most 128 bytes"},
		{"long name", &inventoryv1.Product{Id: "a", Name: long, Price: eur(1)},
			"inventory: catalogue[0]: validation error: name: must be at most 128 bytes"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := inventory.New(inventory.Config{Catalogue: []*inventoryv1.Product{tc.product}}, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
}
