package inventory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/internal/validation"
	"github.com/trustmesh/trustmesh/services/inventory"
)

func eur(minor int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", UnitsMinor: minor} }

// newServer returns a server stocked with two products: 10 apples and 2 figs.
func newServer(t *testing.T) *inventory.Server {
	t.Helper()
	s, err := inventory.New(inventory.Config{Catalogue: []*inventoryv1.Product{
		{Id: "sku-apple", Name: "Apple", Price: eur(45), AvailableQuantity: 10},
		{Id: "sku-fig", Name: "Fig", Price: eur(120), AvailableQuantity: 2},
	}}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// serve serves s over mTLS as inventory, with the proto's request rules
// enforced as in the mesh, until the test ends, and returns a client that
// calls it as orders.
func serve(t *testing.T, s *inventory.Server, opts ...mesh.GRPCServerOption) inventoryv1.InventoryServiceClient {
	t.Helper()
	m := meshtest.New(t)
	v, err := validation.GRPC()
	if err != nil {
		t.Fatal(err)
	}
	addr := m.ServeGRPC(meshtest.Inventory, func(r grpc.ServiceRegistrar) {
		inventoryv1.RegisterInventoryServiceServer(r, s)
	}, append([]mesh.GRPCServerOption{v}, opts...)...)
	return inventoryv1.NewInventoryServiceClient(m.DialGRPC(addr, meshtest.Orders, meshtest.Inventory))
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != msg {
		t.Fatalf("error = %v, want code %v and message %q", err, code, msg)
	}
}

// stock returns the available quantity of every product.
func stock(t *testing.T, s *inventory.Server) map[string]int64 {
	t.Helper()
	res, err := s.ListProducts(context.Background(), &inventoryv1.ListProductsRequest{})
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	m := make(map[string]int64)
	for _, p := range res.GetProducts() {
		m[p.GetId()] = p.GetAvailableQuantity()
	}
	return m
}

func item(id string, q int32) *inventoryv1.StockItem {
	return &inventoryv1.StockItem{ProductId: id, Quantity: q}
}

func TestNewRejectsBadCatalogue(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name      string
		catalogue []*inventoryv1.Product
		want      string
	}{
		{"empty id", []*inventoryv1.Product{{Name: "A", Price: eur(1)}}, "inventory: catalogue[0]: validation error: id: value is required"},
		{"no name", []*inventoryv1.Product{{Id: "a", Price: eur(1)}}, "inventory: catalogue[0]: validation error: name: value is required"},
		{"no price", []*inventoryv1.Product{{Id: "a", Name: "A"}}, "inventory: catalogue[0]: validation error: price: value is required"},
		{"no currency", []*inventoryv1.Product{{Id: "a", Name: "A", Price: &moneyv1.Money{UnitsMinor: 1}}},
			"inventory: catalogue[0]: validation error: price.currency_code: does not match regex pattern `^[A-Z]{3}$`"},
		{"negative price", []*inventoryv1.Product{{Id: "a", Name: "A", Price: eur(-1)}}, "inventory: catalogue[0]: validation error: price: units_minor must not be negative"},
		{"negative stock", []*inventoryv1.Product{{Id: "a", Name: "A", Price: eur(1), AvailableQuantity: -1}},
			"inventory: catalogue[0]: validation error: available_quantity: must be greater than or equal to 0"},
		{"duplicate", []*inventoryv1.Product{{Id: "a", Name: "A", Price: eur(1)}, {Id: "a", Name: "B", Price: eur(1)}}, `inventory: catalogue[1]: duplicate product "a"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := inventory.New(inventory.Config{Catalogue: tc.catalogue}, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestListProductsDefaultCatalogue(t *testing.T) {
	t.Parallel()
	s, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	res, err := s.ListProducts(context.Background(), &inventoryv1.ListProductsRequest{})
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	var ids []string
	for _, p := range res.GetProducts() {
		ids = append(ids, p.GetId())
		if p.GetPrice().GetCurrencyCode() != "EUR" || p.GetAvailableQuantity() <= 0 {
			t.Errorf("product %v: want an EUR price and stock", p)
		}
	}
	if got, want := fmt.Sprint(ids), "[sku-apple sku-fig sku-pear sku-truffle]"; got != want {
		t.Fatalf("product IDs = %s, want %s (sorted)", got, want)
	}
}

func TestReserveValidation(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		req  *inventoryv1.ReserveRequest
		code codes.Code
		msg  string
	}{
		{"no order id", &inventoryv1.ReserveRequest{Items: []*inventoryv1.StockItem{item("sku-apple", 1)}},
			codes.InvalidArgument, "validation error: order_id: value is required"},
		{"no items", &inventoryv1.ReserveRequest{OrderId: "o1"},
			codes.InvalidArgument, "validation error: items: must contain at least 1 item(s)"},
		{"empty product id", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 1), item("", 1)}},
			codes.InvalidArgument, "validation error: items[1].product_id: value is required"},
		{"zero quantity", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 0)}},
			codes.InvalidArgument, "validation error: items[0].quantity: must be greater than 0"},
		{"negative quantity", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", -3)}},
			codes.InvalidArgument, "validation error: items[0].quantity: must be greater than 0"},
		{"duplicate product", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 1), item("sku-apple", 2)}},
			codes.InvalidArgument, "validation error: items: must list each product at most once"},
		{"unknown product", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 1), item("sku-kiwi", 1)}},
			codes.NotFound, `items[1].product_id: unknown product "sku-kiwi"`},
		{"short stock", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 1), item("sku-fig", 3)}},
			codes.FailedPrecondition, `insufficient stock for product "sku-fig": requested 3, available 2`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			before := stock(t, s)
			_, err := serve(t, s).Reserve(context.Background(), tc.req)
			wantStatus(t, err, tc.code, tc.msg)
			// All or nothing: a failed reservation takes no stock at all.
			if after := stock(t, s); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("stock changed by a failed Reserve: %v -> %v", before, after)
			}
		})
	}
}

func TestReserveTakesStockAndPrices(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	res, err := s.Reserve(context.Background(), &inventoryv1.ReserveRequest{
		OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-fig", 2), item("sku-apple", 3)},
	})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	r := res.GetReservation()
	if r.GetOrderId() != "o1" || r.GetCreateTime() == nil || r.GetReleaseTime() != nil {
		t.Fatalf("reservation = %v", r)
	}
	got := fmt.Sprintf("%d %s %s %d %d %s", len(r.GetLines()), r.GetLines()[0].GetProductId(), r.GetLines()[0].GetProductName(),
		r.GetLines()[0].GetQuantity(), r.GetLines()[0].GetUnitPrice().GetUnitsMinor(), r.GetLines()[1].GetProductId())
	if want := "2 sku-fig Fig 2 120 sku-apple"; got != want {
		t.Fatalf("lines = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(stock(t, s)), "map[sku-apple:7 sku-fig:0]"; got != want {
		t.Fatalf("stock = %s, want %s", got, want)
	}
}

func TestReserveIsIdempotentPerOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newServer(t)
	req := &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 4), item("sku-fig", 1)}}
	first, err := s.Reserve(ctx, req)
	if err != nil {
		t.Fatalf("first Reserve: %v", err)
	}
	// The same items in another order are the same reservation.
	again, err := s.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-fig", 1), item("sku-apple", 4)}})
	if err != nil {
		t.Fatalf("second Reserve: %v", err)
	}
	if !first.GetReservation().GetCreateTime().AsTime().Equal(again.GetReservation().GetCreateTime().AsTime()) {
		t.Fatalf("second Reserve made a new reservation: %v vs %v", first, again)
	}
	if got, want := fmt.Sprint(stock(t, s)), "map[sku-apple:6 sku-fig:1]"; got != want {
		t.Fatalf("stock = %s, want %s (taken once)", got, want)
	}

	_, err = s.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-apple", 5)}})
	wantStatus(t, err, codes.AlreadyExists, `order "o1" already has a reservation for other items`)

	if _, err := s.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: "o1"}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	_, err = s.Reserve(ctx, req)
	wantStatus(t, err, codes.FailedPrecondition, `reservation for order "o1" was released`)
}

func TestRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newServer(t)
	if _, err := s.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{item("sku-fig", 2)}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	for i := range 2 { // the second Release is a no-op
		res, err := s.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: "o1"})
		if err != nil {
			t.Fatalf("Release #%d: %v", i+1, err)
		}
		if res.GetReservation().GetReleaseTime() == nil {
			t.Fatalf("Release #%d: release_time unset", i+1)
		}
		if got, want := fmt.Sprint(stock(t, s)), "map[sku-apple:10 sku-fig:2]"; got != want {
			t.Fatalf("stock after Release #%d = %s, want %s", i+1, got, want)
		}
	}

	_, err := s.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: "o2"})
	wantStatus(t, err, codes.NotFound, `no reservation for order "o2"`)
	_, err = serve(t, s).Release(ctx, &inventoryv1.ReleaseRequest{})
	wantStatus(t, err, codes.InvalidArgument, "validation error: order_id: value is required")
}

func TestRestock(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		req  *inventoryv1.RestockRequest
		code codes.Code
		msg  string
	}{
		{"ok", &inventoryv1.RestockRequest{ProductId: "sku-fig", Quantity: 5}, codes.OK, ""},
		{"no product id", &inventoryv1.RestockRequest{Quantity: 5}, codes.InvalidArgument, "validation error: product_id: value is required"},
		{"zero quantity", &inventoryv1.RestockRequest{ProductId: "sku-fig"}, codes.InvalidArgument, "validation error: quantity: must be greater than 0"},
		{"negative quantity", &inventoryv1.RestockRequest{ProductId: "sku-fig", Quantity: -5}, codes.InvalidArgument, "validation error: quantity: must be greater than 0"},
		{"unknown product", &inventoryv1.RestockRequest{ProductId: "sku-kiwi", Quantity: 1}, codes.NotFound, `product_id: unknown product "sku-kiwi"`},
		{"overflow", &inventoryv1.RestockRequest{ProductId: "sku-fig", Quantity: 1<<63 - 1}, codes.InvalidArgument,
			`quantity: restocking 9223372036854775807 would overflow the stock of product "sku-fig"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			res, err := serve(t, s).Restock(context.Background(), tc.req)
			if tc.code != codes.OK {
				wantStatus(t, err, tc.code, tc.msg)
				return
			}
			if err != nil {
				t.Fatalf("Restock: %v", err)
			}
			if got := res.GetProduct().GetAvailableQuantity(); got != 7 {
				t.Fatalf("available = %d, want 7", got)
			}
		})
	}
}

func TestConcurrentReservesNeverOversell(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newServer(t) // 10 apples
	const buyers = 50
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		okN    int
		errs   = make(map[codes.Code]int)
		orders = make(chan string, buyers)
	)
	for i := range buyers {
		wg.Go(func() {
			id := fmt.Sprintf("o%d", i)
			_, err := s.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: id, Items: []*inventoryv1.StockItem{item("sku-apple", 1)}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[status.Code(err)]++
				return
			}
			okN++
			orders <- id
		})
		wg.Go(func() { _, _ = s.ListProducts(ctx, &inventoryv1.ListProductsRequest{}) })
	}
	wg.Wait()
	close(orders)
	if okN != 10 || errs[codes.FailedPrecondition] != buyers-10 {
		t.Fatalf("reserved %d, errors %v; want 10 reserved and %d FailedPrecondition", okN, errs, buyers-10)
	}
	for id := range orders {
		wg.Go(func() {
			if _, err := s.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: id}); err != nil {
				t.Errorf("Release %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	if got := stock(t, s)["sku-apple"]; got != 10 {
		t.Fatalf("apples after releasing all = %d, want 10", got)
	}
}
