package inventory

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	"github.com/trustmesh/trustmesh/services/internal/downstream"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/validation"
)

// MaxIDBytes is the longest order or product ID, and product name, that
// the server accepts, in bytes: a longer one is InvalidArgument.
const MaxIDBytes = input.MaxIDBytes

// Config configures a [Server].
type Config struct {
	// Catalogue is the products the server starts with; their
	// AvailableQuantity is the initial stock. Each must keep the rules of
	// shop.inventory.v1.Product (a unique ID and a name of 1 to
	// [MaxIDBytes] bytes, a price with an ISO 4217 currency code and a
	// non-negative amount, non-negative stock). By default (nil or empty),
	// [DefaultCatalogue].
	Catalogue []*inventoryv1.Product
}

// DefaultCatalogue returns the sample mesh's products, priced in EUR. A
// handful of truffles is enough to exceed the payments service's default limit
// of 1000.00 EUR, which is how the sample shows a declined payment.
func DefaultCatalogue() []*inventoryv1.Product {
	eur := func(minor int64) *moneyv1.Money {
		return &moneyv1.Money{CurrencyCode: "EUR", UnitsMinor: minor}
	}
	return []*inventoryv1.Product{
		{Id: "sku-apple", Name: "Apple", Price: eur(45), AvailableQuantity: 100},
		{Id: "sku-pear", Name: "Pear", Price: eur(60), AvailableQuantity: 50},
		{Id: "sku-fig", Name: "Fig", Price: eur(120), AvailableQuantity: 20},
		{Id: "sku-truffle", Name: "Black truffle", Price: eur(45000), AvailableQuantity: 10},
	}
}

// Server implements [inventoryv1.InventoryServiceServer] over an in-memory
// catalogue. Create it with [New], and serve it with the request rules
// enforced (validation.GRPC): its methods rely on them.
type Server struct {
	inventoryv1.UnimplementedInventoryServiceServer

	log *slog.Logger
	now func() time.Time

	mu           sync.Mutex
	products     map[string]*inventoryv1.Product // guarded by mu
	reservations map[string]*inventoryv1.Reservation
}

var _ inventoryv1.InventoryServiceServer = (*Server)(nil)

// New returns a Server stocked with cfg.Catalogue. It fails if a product
// of the catalogue breaks the proto's rules ("inventory: catalogue[0]:
// validation error: name: value is required") or two share an ID. A nil
// log discards log output.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	catalogue := cfg.Catalogue
	if len(catalogue) == 0 {
		catalogue = DefaultCatalogue()
	}
	v, err := validation.Validator()
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	products := make(map[string]*inventoryv1.Product, len(catalogue))
	for i, p := range catalogue {
		if err := v.Validate(p); err != nil {
			return nil, fmt.Errorf("inventory: catalogue[%d]: %w", i, err)
		}
		if _, dup := products[p.GetId()]; dup {
			return nil, fmt.Errorf("inventory: catalogue[%d]: duplicate product %q", i, p.GetId())
		}
		products[p.GetId()] = proto.CloneOf(p)
	}
	return &Server{
		log:          log,
		now:          time.Now,
		products:     products,
		reservations: make(map[string]*inventoryv1.Reservation),
	}, nil
}

// ListProducts returns every product, ordered by ID.
func (s *Server) ListProducts(context.Context, *inventoryv1.ListProductsRequest) (*inventoryv1.ListProductsResponse, error) {
	s.mu.Lock()
	products := make([]*inventoryv1.Product, 0, len(s.products))
	for _, p := range s.products {
		products = append(products, proto.CloneOf(p))
	}
	s.mu.Unlock()
	slices.SortFunc(products, func(a, b *inventoryv1.Product) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return &inventoryv1.ListProductsResponse{Products: products}, nil
}

// Reserve takes the stock for every item of req, or none of it: an unknown
// product is NotFound and a short one FailedPrecondition, and then nothing is
// taken. Reserving again for the same order with the same items returns the
// existing reservation; with other items it is AlreadyExists, and after the
// reservation was released it is FailedPrecondition (order IDs are single use).
// req must keep the proto's rules (see services/internal/validation): an
// order ID and product IDs of 1 to [MaxIDBytes] bytes, at least one item,
// each product at most once, positive quantities. The log line of a
// reservation names the subject of the call's transaction token (who the
// order is for), when it carries one.
func (s *Server) Reserve(ctx context.Context, req *inventoryv1.ReserveRequest) (*inventoryv1.ReserveResponse, error) {
	orderID := req.GetOrderId()

	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.reservations[orderID]; ok {
		if r.GetReleaseTime() != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "reservation for order %q was released", input.Clip(orderID))
		}
		if !sameItems(r, req.GetItems()) {
			return nil, status.Errorf(codes.AlreadyExists, "order %q already has a reservation for other items", input.Clip(orderID))
		}
		return &inventoryv1.ReserveResponse{Reservation: proto.CloneOf(r)}, nil
	}
	// Check everything before taking anything: all or nothing.
	for i, item := range req.GetItems() {
		p, ok := s.products[item.GetProductId()]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "items[%d].product_id: unknown product %q", i, input.Clip(item.GetProductId()))
		}
		if want := int64(item.GetQuantity()); want > p.GetAvailableQuantity() {
			return nil, status.Errorf(codes.FailedPrecondition,
				"insufficient stock for product %q: requested %d, available %d",
				p.GetId(), want, p.GetAvailableQuantity())
		}
	}
	r := &inventoryv1.Reservation{
		OrderId:    orderID,
		Lines:      make([]*inventoryv1.ReservationLine, 0, len(req.GetItems())),
		CreateTime: timestamppb.New(s.now()),
	}
	for _, item := range req.GetItems() {
		p := s.products[item.GetProductId()]
		p.AvailableQuantity -= int64(item.GetQuantity())
		r.Lines = append(r.Lines, &inventoryv1.ReservationLine{
			ProductId:   p.GetId(),
			ProductName: p.GetName(),
			Quantity:    item.GetQuantity(),
			UnitPrice:   proto.CloneOf(p.GetPrice()),
		})
	}
	s.reservations[orderID] = r
	s.log.Info("stock reserved", slog.String("order_id", input.Clip(orderID)), slog.Int("lines", len(r.Lines)), downstream.Subject(ctx))
	return &inventoryv1.ReserveResponse{Reservation: proto.CloneOf(r)}, nil
}

// sameItems reports whether r holds exactly items, in any order.
func sameItems(r *inventoryv1.Reservation, items []*inventoryv1.StockItem) bool {
	if len(r.GetLines()) != len(items) {
		return false
	}
	want := make(map[string]int32, len(items))
	for _, item := range items {
		want[item.GetProductId()] = item.GetQuantity()
	}
	for _, l := range r.GetLines() {
		if q, ok := want[l.GetProductId()]; !ok || q != l.GetQuantity() {
			return false
		}
	}
	return true
}

// Release gives the stock of the order's reservation back. Releasing again is
// a no-op that returns the released reservation; an order without a
// reservation is NotFound, so that a caller compensating for the wrong order
// hears about it. The order ID has 1 to [MaxIDBytes] bytes (the proto's
// rule).
func (s *Server) Release(ctx context.Context, req *inventoryv1.ReleaseRequest) (*inventoryv1.ReleaseResponse, error) {
	orderID := req.GetOrderId()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[orderID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no reservation for order %q", input.Clip(orderID))
	}
	if r.GetReleaseTime() == nil {
		for _, l := range r.GetLines() {
			// Products are never removed, so every reserved product exists.
			s.products[l.GetProductId()].AvailableQuantity += int64(l.GetQuantity())
		}
		r.ReleaseTime = timestamppb.New(s.now())
		s.log.Info("stock released", slog.String("order_id", input.Clip(orderID)), downstream.Subject(ctx))
	}
	return &inventoryv1.ReleaseResponse{Reservation: proto.CloneOf(r)}, nil
}

// Restock adds req.Quantity units to an existing product's stock; a sum
// over the largest int64 is InvalidArgument. req keeps the proto's rules: a
// product ID of 1 to [MaxIDBytes] bytes and a positive quantity.
func (s *Server) Restock(_ context.Context, req *inventoryv1.RestockRequest) (*inventoryv1.RestockResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.products[req.GetProductId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "product_id: unknown product %q", input.Clip(req.GetProductId()))
	}
	if p.GetAvailableQuantity() > math.MaxInt64-req.GetQuantity() {
		return nil, status.Errorf(codes.InvalidArgument, "quantity: restocking %d would overflow the stock of product %q", req.GetQuantity(), p.GetId())
	}
	p.AvailableQuantity += req.GetQuantity()
	s.log.Info("product restocked", slog.String("product_id", p.GetId()),
		slog.Int64("quantity", req.GetQuantity()), slog.Int64("available", p.GetAvailableQuantity()))
	return &inventoryv1.RestockResponse{Product: proto.CloneOf(p)}, nil
}
