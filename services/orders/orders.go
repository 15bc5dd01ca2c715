package orders

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/services/internal/downstream"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/txn"
)

// MaxIDBytes is the longest customer, product or order ID that the server
// accepts, in bytes: a longer one is InvalidArgument.
const MaxIDBytes = input.MaxIDBytes

// DefaultStepInterval is the step between an order's statuses that the
// sample mesh uses.
const DefaultStepInterval = 2 * time.Second

// compensationTimeout bounds the inventory Release that undoes a reservation.
// It runs detached from the caller's context, so that a caller who gives up
// does not leave stock reserved.
const compensationTimeout = 5 * time.Second

// Config configures a [Server]. The zero Config is valid and disables status
// progression.
type Config struct {
	// StepInterval is the time a confirmed order spends in each status before
	// the next: CONFIRMED, then SHIPPED, then DELIVERED. Zero (the default)
	// disables progression, so orders stay CONFIRMED; negative is an error.
	StepInterval time.Duration
}

// Server implements [ordersv1.OrderServiceServer] with orders kept in memory.
// Create it with [New] and stop it with [Server.Close]. Serve it with the
// request rules enforced (validation.GRPC) and with transaction tokens
// verified (interceptors.WithTransactionTokens): its methods rely on them.
// Every method serves the subject of the call's verified transaction token
// (txn.FromContext), the person the gateway minted it for, and nobody else:
// CreateOrder places the order for the subject, GetOrder and WatchOrder show
// only the subject's orders. A call without a token is Unauthenticated.
type Server struct {
	ordersv1.UnimplementedOrderServiceServer

	step time.Duration
	inv  inventoryv1.InventoryServiceClient
	pay  paymentsv1connect.PaymentServiceClient
	log  *slog.Logger
	now  func() time.Time
	// after starts the wait for one status step; tests replace it.
	after func(time.Duration) <-chan time.Time

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // status progression goroutines

	mu     sync.Mutex
	closed bool               // guarded by mu
	orders map[string]*record // guarded by mu
}

var _ ordersv1.OrderServiceServer = (*Server)(nil)

// record is the history of one order.
type record struct {
	// versions holds every state of the order, oldest first. The orders in it
	// are never modified; a change appends a new one.
	versions []*ordersv1.Order
	// changed is closed, and replaced, when a version is appended.
	changed chan struct{}
}

func (r *record) latest() *ordersv1.Order { return r.versions[len(r.versions)-1] }

// New returns a Server that reserves stock through inv and charges through
// pay. A nil log discards log output.
func New(cfg Config, inv inventoryv1.InventoryServiceClient, pay paymentsv1connect.PaymentServiceClient, log *slog.Logger) (*Server, error) {
	switch {
	case inv == nil:
		return nil, errors.New("orders: nil inventory client")
	case pay == nil:
		return nil, errors.New("orders: nil payments client")
	case cfg.StepInterval < 0:
		return nil, fmt.Errorf("orders: negative StepInterval %v", cfg.StepInterval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		step:   cfg.StepInterval,
		inv:    inv,
		pay:    pay,
		log:    log,
		now:    time.Now,
		after:  time.After,
		ctx:    ctx,
		cancel: cancel,
		orders: make(map[string]*record),
	}, nil
}

// Close stops status progression, ends open WatchOrder streams with
// Unavailable, and makes CreateOrder fail with Unavailable. It waits for the
// server's goroutines to return. Orders stay readable with GetOrder. Close is
// idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

var errClosed = status.Error(codes.Unavailable, "orders service is shutting down")

// CreateOrder reserves stock for req's items, charges their total, and
// returns the CONFIRMED order, placed for the subject of the call's
// transaction token (see [Server]). When the reservation fails nothing is stored
// and the inventory error is returned. When the charge fails the stock is
// released, the order is kept as PAYMENT_DECLINED (a decline) or CANCELLED
// (any other failure), and the payments error is returned. req keeps the
// proto's rules (see services/internal/validation): a customer ID of at
// most [MaxIDBytes] bytes, product IDs of 1 to [MaxIDBytes] bytes, at least
// one item, each product at most once, positive quantities. The customer ID
// may be empty or repeat the subject's SPIFFE ID; any other is
// PermissionDenied, before any downstream call.
func (s *Server) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	who, err := subject(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkClaimedCustomer(req.GetCustomerId(), who); err != nil {
		return nil, err
	}
	id := newID("ord_")
	log := s.log.With(slog.String("order_id", id), slog.String("subject", who.String()), downstream.TraceID(ctx))

	items := make([]*inventoryv1.StockItem, 0, len(req.GetItems()))
	for _, item := range req.GetItems() {
		items = append(items, &inventoryv1.StockItem{ProductId: item.GetProductId(), Quantity: item.GetQuantity()})
	}
	res, err := s.inv.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: id, Items: items})
	if err != nil {
		code := status.Code(err)
		log.Log(ctx, failureLevel(code), "order rejected: reservation failed", slog.String("code", code.String()), downstream.ErrorAttr(err))
		if !definitive(code) {
			// The reservation may have been made all the same.
			s.release(ctx, id, log)
		}
		return nil, status.Error(downstream.Public("inventory", err))
	}

	now := timestamppb.New(s.now())
	order := &ordersv1.Order{
		Id:         id,
		CustomerId: who.String(),
		Status:     ordersv1.OrderStatus_ORDER_STATUS_PENDING,
		CreateTime: now,
		UpdateTime: now,
	}
	if err := price(order, res.GetReservation()); err != nil {
		log.Error("order rejected: cannot price reservation", slog.Any("error", err))
		s.release(ctx, id, log)
		return nil, err
	}
	s.insert(order)

	charge, err := s.pay.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: id, Amount: order.GetTotal()}))
	if err != nil {
		code := codes.Code(connect.CodeOf(err)) // the two code sets number their codes identically
		s.release(ctx, id, log)
		// The reason is shown to people (GetOrder), so it is the caller's
		// message, not the downstream's error.
		pubCode, pubMsg := downstream.Public("payments", err)
		next, reason := ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, "payment failed: "+pubMsg
		if code == codes.FailedPrecondition {
			next, reason = ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED, pubMsg
		}
		s.update(id, func(o *ordersv1.Order) { o.Status, o.StatusReason = next, reason })
		log.Log(ctx, failureLevel(code), "order failed: charge failed", slog.String("code", code.String()), downstream.ErrorAttr(err),
			slog.String("status", next.String()))
		return nil, status.Error(pubCode, pubMsg)
	}

	confirmed := s.update(id, func(o *ordersv1.Order) {
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
		o.PaymentId = charge.Msg.GetPayment().GetId()
	})
	s.progress(id)
	log.Info("order confirmed", slog.String("payment_id", confirmed.GetPaymentId()),
		slog.Int64("total_minor", confirmed.GetTotal().GetUnitsMinor()))
	return &ordersv1.CreateOrderResponse{Order: proto.CloneOf(confirmed)}, nil
}

// failureLevel is the level at which a downstream failure with code is
// logged: Info for a downstream's answer about the request (a short stock,
// a declined payment), which is routine, Warn for anything else.
func failureLevel(code codes.Code) slog.Level {
	if downstream.Relayed(code) {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// definitive reports whether an inventory Reserve that failed with code
// certainly reserved nothing.
func definitive(code codes.Code) bool {
	switch code {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.OutOfRange, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// price fills order's line items and total from the reservation's prices.
func price(order *ordersv1.Order, r *inventoryv1.Reservation) error {
	var total *moneyv1.Money
	for _, l := range r.GetLines() {
		unit := l.GetUnitPrice()
		if unit == nil {
			return status.Errorf(codes.Internal, "inventory returned no price for product %q", l.GetProductId())
		}
		if total == nil {
			total = &moneyv1.Money{CurrencyCode: unit.GetCurrencyCode()}
		}
		if unit.GetCurrencyCode() != total.GetCurrencyCode() {
			return status.Errorf(codes.FailedPrecondition, "products priced in %s and %s cannot be ordered together",
				total.GetCurrencyCode(), unit.GetCurrencyCode())
		}
		q := int64(l.GetQuantity())
		if unit.GetUnitsMinor() < 0 || q <= 0 {
			return status.Errorf(codes.Internal, "inventory returned a bad line for product %q", l.GetProductId())
		}
		if unit.GetUnitsMinor() > 0 && q > math.MaxInt64/unit.GetUnitsMinor() ||
			total.GetUnitsMinor() > math.MaxInt64-q*unit.GetUnitsMinor() {
			return status.Error(codes.InvalidArgument, "items: order total is too large")
		}
		lineTotal := q * unit.GetUnitsMinor()
		total.UnitsMinor += lineTotal
		order.LineItems = append(order.LineItems, &ordersv1.LineItem{
			ProductId:   l.GetProductId(),
			ProductName: l.GetProductName(),
			Quantity:    l.GetQuantity(),
			UnitPrice:   proto.CloneOf(unit),
			LineTotal:   &moneyv1.Money{CurrencyCode: unit.GetCurrencyCode(), UnitsMinor: lineTotal},
		})
	}
	if total == nil {
		return status.Error(codes.Internal, "inventory returned an empty reservation")
	}
	order.Total = total
	return nil
}

// release undoes the order's reservation, detached from ctx's cancellation.
// Failures are logged: the caller already has an error to return.
func (s *Server) release(ctx context.Context, id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensationTimeout)
	defer cancel()
	_, err := s.inv.Release(ctx, &inventoryv1.ReleaseRequest{OrderId: id})
	switch {
	case err == nil:
		log.Info("stock released")
	case status.Code(err) == codes.NotFound:
		log.Debug("no stock to release")
	default:
		log.Error("compensation failed: stock stays reserved", downstream.ErrorAttr(err))
	}
}

// GetOrder returns the order as it is now. An order of another customer
// than the call's subject is NotFound, like one that does not exist. The
// order ID has 1 to [MaxIDBytes] bytes (the proto's rule).
func (s *Server) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	who, err := subject(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.orders[req.GetOrderId()]
	if !ok || rec.latest().GetCustomerId() != who.String() {
		return nil, notFound(req.GetOrderId())
	}
	return &ordersv1.GetOrderResponse{Order: proto.CloneOf(rec.latest())}, nil
}

// WatchOrder sends the order as it is now and then every later state of it,
// none skipped, until the order reaches a final status (the stream then ends
// with OK), the caller cancels, or the server is closed (Unavailable). An
// order of another customer than the call's subject is NotFound, like
// GetOrder. The order ID has 1 to [MaxIDBytes] bytes (the proto's rule).
func (s *Server) WatchOrder(req *ordersv1.WatchOrderRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	ctx := stream.Context()
	who, err := subject(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	rec, ok := s.orders[req.GetOrderId()]
	var next int
	if ok && rec.latest().GetCustomerId() == who.String() { // the customer never changes
		next = len(rec.versions) - 1
	} else {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return notFound(req.GetOrderId())
	}

	for {
		s.mu.Lock()
		pending := rec.versions[next:len(rec.versions):len(rec.versions)]
		changed := rec.changed
		s.mu.Unlock()
		for _, o := range pending {
			if err := stream.Send(&ordersv1.WatchOrderResponse{Order: proto.CloneOf(o)}); err != nil {
				return err
			}
			if final(o.GetStatus()) {
				return nil
			}
		}
		next += len(pending)
		select {
		case <-changed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.ctx.Done():
			return errClosed
		}
	}
}

// final reports whether an order in status st never changes again.
func final(st ordersv1.OrderStatus) bool {
	switch st {
	case ordersv1.OrderStatus_ORDER_STATUS_DELIVERED,
		ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
		ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED:
		return true
	}
	return false
}

// subject returns who the call is for: the subject of the transaction
// token that the mesh verified (or the edge minted) for it. A call without
// one is Unauthenticated: orders are placed and shown on behalf of a
// verified subject only, never of a customer ID a request names.
func subject(ctx context.Context) (spiffeid.ID, error) {
	tok, ok := txn.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, errNoSubject
	}
	return tok.Subject(), nil
}

var errNoSubject = status.Error(codes.Unauthenticated, "no verified subject: orders serves calls that carry a transaction token only")

// checkClaimedCustomer accepts an empty customer ID or the subject's SPIFFE
// ID; anything else would place an order for someone the transaction is
// not for.
func checkClaimedCustomer(claimed string, who spiffeid.ID) error {
	if claimed == "" || claimed == who.String() {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "customer_id %q is not the transaction's subject %s: orders are placed for the subject",
		input.Clip(claimed), who)
}

func notFound(id string) error {
	return status.Errorf(codes.NotFound, "order %q not found", input.Clip(id))
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// insert stores a new order.
func (s *Server) insert(o *ordersv1.Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orders[o.GetId()] = &record{versions: []*ordersv1.Order{o}, changed: make(chan struct{})}
}

// update appends a changed copy of the order's latest state, wakes its
// watchers, and returns the new state (which must not be modified).
func (s *Server) update(id string, change func(*ordersv1.Order)) *ordersv1.Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.orders[id]
	o := proto.CloneOf(rec.latest())
	change(o)
	o.UpdateTime = timestamppb.New(s.now())
	rec.versions = append(rec.versions, o)
	close(rec.changed)
	rec.changed = make(chan struct{})
	return o
}

// progress starts moving a confirmed order through its later statuses, unless
// progression is disabled or the server is closed.
func (s *Server) progress(id string) {
	if s.step == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, next := range []ordersv1.OrderStatus{
			ordersv1.OrderStatus_ORDER_STATUS_SHIPPED,
			ordersv1.OrderStatus_ORDER_STATUS_DELIVERED,
		} {
			select {
			case <-s.ctx.Done():
				return
			case <-s.after(s.step):
			}
			s.update(id, func(o *ordersv1.Order) { o.Status = next })
			s.log.Info("order progressed", slog.String("order_id", id), slog.String("status", next.String()))
		}
	}()
}

// newID returns prefix followed by 16 random hex digits.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	return prefix + hex.EncodeToString(b[:])
}
