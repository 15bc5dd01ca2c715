package orders_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

const (
	confirmed = ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
	shipped   = ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
	delivered = ordersv1.OrderStatus_ORDER_STATUS_DELIVERED
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// recordingInventory is the real inventory that remembers the order IDs it
// was asked to reserve and release, and can be made to fail.
type recordingInventory struct {
	inventoryv1.InventoryServiceClient
	reserveErr error // returned by Reserve after reserving, if set

	mu       sync.Mutex
	reserved []string
	released []string
}

func (r *recordingInventory) Reserve(ctx context.Context, in *inventoryv1.ReserveRequest, opts ...grpc.CallOption) (*inventoryv1.ReserveResponse, error) {
	r.mu.Lock()
	r.reserved = append(r.reserved, in.GetOrderId())
	r.mu.Unlock()
	res, err := r.InventoryServiceClient.Reserve(ctx, in, opts...)
	if r.reserveErr != nil {
		return nil, r.reserveErr
	}
	return res, err
}

func (r *recordingInventory) Release(ctx context.Context, in *inventoryv1.ReleaseRequest, opts ...grpc.CallOption) (*inventoryv1.ReleaseResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err() // compensation must not inherit a cancelled context
	}
	r.mu.Lock()
	r.released = append(r.released, in.GetOrderId())
	r.mu.Unlock()
	return r.InventoryServiceClient.Release(ctx, in, opts...)
}

func (r *recordingInventory) calls() (reserved, released []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reserved...), append([]string(nil), r.released...)
}

// failingPayments fails every charge with err.
type failingPayments struct {
	paymentsv1connect.PaymentServiceClient
	err error
}

func (f failingPayments) Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	return nil, f.err
}

type fixture struct {
	m   *meshtest.Mesh
	srv *orders.Server
	inv *recordingInventory
}

// as returns ctx carrying a transaction token for subject, minted as the
// gateway mints them: the context of a call the gateway makes for subject.
func (f fixture) as(ctx context.Context, subject string) context.Context {
	return f.m.OnBehalfOf(ctx, subject)
}

// alice is f.as(context.Background(), meshtest.Alice).
func (f fixture) alice() context.Context { return f.as(context.Background(), meshtest.Alice) }

type options struct {
	step       time.Duration
	after      func(time.Duration) <-chan time.Time
	pay        paymentsv1connect.PaymentServiceClient
	reserveErr error
}

// newFixture wires an orders server to the real inventory (default
// catalogue) and payments (default limit of EUR 1000.00).
func newFixture(t *testing.T, o options) fixture {
	t.Helper()
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatalf("inventory.New: %v", err)
	}
	inv := &recordingInventory{InventoryServiceClient: inproc.InventoryClient(invSrv), reserveErr: o.reserveErr}
	pay := o.pay
	if pay == nil {
		pay = payments.New(payments.Config{}, nil)
	}
	srv, err := orders.New(orders.Config{StepInterval: o.step}, inv, pay, nil)
	if err != nil {
		t.Fatalf("orders.New: %v", err)
	}
	if o.after != nil {
		orders.SetAfter(srv, o.after)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return fixture{m: meshtest.New(t), srv: srv, inv: inv}
}

// serve serves the fixture's orders server over mTLS, with the proto's
// request rules enforced and transaction tokens verified as in the mesh,
// and returns a client that calls it as the gateway (with f.as's tokens).
func (f fixture) serve(t *testing.T) ordersv1.OrderServiceClient {
	t.Helper()
	return serveOrders(t, f.m, f.srv, meshtest.NewLog())
}

func (f fixture) stock(t *testing.T) map[string]int64 {
	t.Helper()
	res, err := f.inv.ListProducts(context.Background(), &inventoryv1.ListProductsRequest{})
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	m := make(map[string]int64)
	for _, p := range res.GetProducts() {
		m[p.GetId()] = p.GetAvailableQuantity()
	}
	return m
}

func cart(kv ...any) []*ordersv1.CartItem {
	var items []*ordersv1.CartItem
	for i := 0; i < len(kv); i += 2 {
		items = append(items, &ordersv1.CartItem{ProductId: kv[i].(string), Quantity: int32(kv[i+1].(int))})
	}
	return items
}

// create places an order of items for alice (the subject; the request
// names no customer).
func create(f fixture, items []*ordersv1.CartItem) (*ordersv1.Order, error) {
	res, err := f.srv.CreateOrder(f.alice(), &ordersv1.CreateOrderRequest{Items: items})
	return res.GetOrder(), err
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != msg {
		t.Fatalf("error = %v, want code %v and message %q", err, code, msg)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	invSrv, _ := inventory.New(inventory.Config{}, nil)
	inv := inproc.InventoryClient(invSrv)
	pay := payments.New(payments.Config{}, nil)
	testCases := []struct {
		name string
		cfg  orders.Config
		inv  inventoryv1.InventoryServiceClient
		pay  paymentsv1connect.PaymentServiceClient
		want string
	}{
		{"nil inventory", orders.Config{}, nil, pay, "orders: nil inventory client"},
		{"nil payments", orders.Config{}, inv, nil, "orders: nil payments client"},
		{"negative step", orders.Config{StepInterval: -time.Second}, inv, pay, "orders: negative StepInterval -1s"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := orders.New(tc.cfg, tc.inv, tc.pay, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCreateOrderErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name     string
		customer string
		items    []*ordersv1.CartItem
		code     codes.Code
		msg      string
	}{
		// The customer is the transaction's subject (alice): a request may
		// only repeat it.
		{"another customer", "spiffe://shop.example/user/bob", cart("sku-apple", 1), codes.PermissionDenied,
			`customer_id "spiffe://shop.example/user/bob" is not the transaction's subject spiffe://shop.example/user/alice: orders are placed for the subject`},
		{"customer by name", "alice", cart("sku-apple", 1), codes.PermissionDenied,
			`customer_id "alice" is not the transaction's subject spiffe://shop.example/user/alice: orders are placed for the subject`},
		{"no items", "", nil, codes.InvalidArgument, "validation error: items: must contain at least 1 item(s)"},
		{"empty product id", "", cart("sku-apple", 1, "", 1), codes.InvalidArgument, "validation error: items[1].product_id: value is required"},
		{"zero quantity", "", cart("sku-apple", 0), codes.InvalidArgument, "validation error: items[0].quantity: must be greater than 0"},
		{"duplicate product", "", cart("sku-apple", 1, "sku-apple", 1), codes.InvalidArgument, "validation error: items: must list each product at most once"},
		// Inventory's answers about the request pass through with their code and message.
		{"unknown product", "", cart("sku-apple", 1, "sku-kiwi", 1), codes.NotFound, `items[1].product_id: unknown product "sku-kiwi"`},
		{"short stock", meshtest.Alice, cart("sku-apple", 1, "sku-fig", 21), codes.FailedPrecondition, `insufficient stock for product "sku-fig": requested 21, available 20`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{})
			before := fmt.Sprint(f.stock(t))
			_, err := f.serve(t).CreateOrder(f.alice(), &ordersv1.CreateOrderRequest{CustomerId: tc.customer, Items: tc.items})
			wantStatus(t, err, tc.code, tc.msg)
			if after := fmt.Sprint(f.stock(t)); after != before {
				t.Fatalf("stock changed: %s -> %s", before, after)
			}
			// A definitive reservation failure needs no compensation.
			if _, released := f.inv.calls(); len(released) != 0 {
				t.Fatalf("released %v, want nothing", released)
			}
		})
	}
}

func TestCreateOrderConfirms(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{}) // no progression
	o, err := create(f, cart("sku-fig", 2, "sku-apple", 3))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	if !strings.HasPrefix(o.GetId(), "ord_") || o.GetCustomerId() != meshtest.Alice || o.GetStatus() != confirmed ||
		!strings.HasPrefix(o.GetPaymentId(), "pay_") || o.GetCreateTime() == nil || o.GetUpdateTime() == nil {
		t.Fatalf("order = %v", o)
	}
	var lines []string
	for _, l := range o.GetLineItems() {
		lines = append(lines, fmt.Sprintf("%s %q %d x %d = %d %s", l.GetProductId(), l.GetProductName(), l.GetQuantity(),
			l.GetUnitPrice().GetUnitsMinor(), l.GetLineTotal().GetUnitsMinor(), l.GetLineTotal().GetCurrencyCode()))
	}
	if got, want := strings.Join(lines, "; "), `sku-fig "Fig" 2 x 120 = 240 EUR; sku-apple "Apple" 3 x 45 = 135 EUR`; got != want {
		t.Fatalf("lines = %s, want %s", got, want)
	}
	if got, want := o.GetTotal(), (&moneyv1.Money{CurrencyCode: "EUR", UnitsMinor: 375}); got.GetUnitsMinor() != want.GetUnitsMinor() || got.GetCurrencyCode() != want.GetCurrencyCode() {
		t.Fatalf("total = %v, want %v", got, want)
	}
	if s := f.stock(t); s["sku-fig"] != 18 || s["sku-apple"] != 97 {
		t.Fatalf("stock = %v, want 18 figs and 97 apples", s)
	}
	got, err := f.srv.GetOrder(f.alice(), &ordersv1.GetOrderRequest{OrderId: o.GetId()})
	if err != nil {
		t.Fatalf("GetOrder: %v", err)
	}
	if got.GetOrder().GetStatus() != confirmed || got.GetOrder().GetPaymentId() != o.GetPaymentId() {
		t.Fatalf("GetOrder = %v", got.GetOrder())
	}
}

func TestCreateOrderCompensatesFailedCharge(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name   string
		pay    paymentsv1connect.PaymentServiceClient
		items  []*ordersv1.CartItem
		code   codes.Code
		msg    string
		status ordersv1.OrderStatus
		reason string
	}{
		{
			name:   "declined above the limit",
			items:  cart("sku-truffle", 3, "sku-apple", 1), // EUR 1350.45
			code:   codes.FailedPrecondition,
			msg:    "payment declined: amount EUR 1350.45 exceeds limit EUR 1000.00",
			status: ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED,
			reason: "payment declined: amount EUR 1350.45 exceeds limit EUR 1000.00",
		},
		{
			name:   "payments unavailable",
			pay:    failingPayments{err: connect.NewError(connect.CodeUnavailable, errors.New("connection refused"))},
			items:  cart("sku-apple", 1),
			code:   codes.Unavailable,
			msg:    "payments unavailable", // not the downstream's error
			status: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
			reason: "payment failed: payments unavailable",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{pay: tc.pay, step: time.Millisecond})
			before := fmt.Sprint(f.stock(t))
			_, err := create(f, tc.items)
			wantStatus(t, err, tc.code, tc.msg)
			if after := fmt.Sprint(f.stock(t)); after != before {
				t.Fatalf("stock not released: %s -> %s", before, after)
			}
			reserved, released := f.inv.calls()
			if len(reserved) != 1 || fmt.Sprint(released) != fmt.Sprint(reserved) {
				t.Fatalf("reserved %v, released %v; want the one order released", reserved, released)
			}
			// The failed order is kept in its final status.
			res, err := f.srv.GetOrder(f.alice(), &ordersv1.GetOrderRequest{OrderId: reserved[0]})
			if err != nil {
				t.Fatalf("GetOrder: %v", err)
			}
			if o := res.GetOrder(); o.GetStatus() != tc.status || o.GetStatusReason() != tc.reason || o.GetPaymentId() != "" {
				t.Fatalf("order = %v, want status %v with reason %q", o, tc.status, tc.reason)
			}
		})
	}
}

func TestCreateOrderReleasesAfterUncertainReserve(t *testing.T) {
	t.Parallel()
	// Inventory reserved, but the caller only saw a deadline.
	f := newFixture(t, options{reserveErr: status.Error(codes.DeadlineExceeded, "context deadline exceeded")})
	before := fmt.Sprint(f.stock(t))
	_, err := create(f, cart("sku-pear", 5))
	wantStatus(t, err, codes.DeadlineExceeded, "inventory timed out")
	if after := fmt.Sprint(f.stock(t)); after != before {
		t.Fatalf("stock not released: %s -> %s", before, after)
	}
}

func TestCreateOrderCompensatesDespiteCancelledCaller(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	pay := failingPayments{err: connect.NewError(connect.CodeCanceled, context.Canceled)}
	f := newFixture(t, options{pay: cancelFirst{pay, cancel}})
	before := fmt.Sprint(f.stock(t))
	_, err := f.srv.CreateOrder(f.as(ctx, meshtest.Alice), &ordersv1.CreateOrderRequest{CustomerId: meshtest.Alice, Items: cart("sku-fig", 1)})
	wantStatus(t, err, codes.Canceled, "payments call canceled")
	if after := fmt.Sprint(f.stock(t)); after != before {
		t.Fatalf("stock not released: %s -> %s", before, after)
	}
}

// cancelFirst cancels the caller's context before charging, as a client
// that gives up mid-call would.
type cancelFirst struct {
	paymentsv1connect.PaymentServiceClient
	cancel context.CancelFunc
}

func (c cancelFirst) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	c.cancel()
	return c.PaymentServiceClient.Charge(ctx, req)
}

func TestGetOrderErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	client := f.serve(t)
	_, err := client.GetOrder(f.alice(), &ordersv1.GetOrderRequest{})
	wantStatus(t, err, codes.InvalidArgument, "validation error: order_id: value is required")
	_, err = client.GetOrder(f.alice(), &ordersv1.GetOrderRequest{OrderId: "ord_nope"})
	wantStatus(t, err, codes.NotFound, `order "ord_nope" not found`)
}

// watch collects the statuses of a WatchOrder stream, as alice, until it
// ends.
func watch(ctx context.Context, f fixture, id string) ([]ordersv1.OrderStatus, error) {
	stream, err := inproc.OrdersClient(f.srv).WatchOrder(f.as(ctx, meshtest.Alice), &ordersv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		return nil, err
	}
	var got []ordersv1.OrderStatus
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, res.GetOrder().GetStatus())
	}
}

func TestWatchOrderFollowsEveryStep(t *testing.T) {
	t.Parallel()
	ticks := make(chan time.Time)
	f := newFixture(t, options{step: time.Hour, after: func(time.Duration) <-chan time.Time { return ticks }})
	o, err := create(f, cart("sku-apple", 1))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := inproc.OrdersClient(f.srv).WatchOrder(f.as(ctx, meshtest.Alice), &ordersv1.WatchOrderRequest{OrderId: o.GetId()})
	if err != nil {
		t.Fatalf("WatchOrder: %v", err)
	}
	for _, want := range []ordersv1.OrderStatus{confirmed, shipped, delivered} {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v, want %v", err, want)
		}
		if got := res.GetOrder().GetStatus(); got != want {
			t.Fatalf("status = %v, want %v", got, want)
		}
		if want != delivered {
			select {
			case ticks <- time.Now():
			case <-ctx.Done():
				t.Fatal("progression did not wait for its step")
			}
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after DELIVERED = %v, want io.EOF", err)
	}
}

func TestWatchOrderWithShortStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{step: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			o, err := create(f, cart("sku-apple", 1, "sku-pear", 1))
			if err != nil {
				t.Errorf("CreateOrder: %v", err)
				return
			}
			// Watchers may join late, but never miss or repeat a step.
			got, err := watch(ctx, f, o.GetId())
			all := []ordersv1.OrderStatus{confirmed, shipped, delivered}
			if err != nil || len(got) == 0 || fmt.Sprint(got) != fmt.Sprint(all[len(all)-len(got):]) {
				t.Errorf("watch %s = %v, %v; want a suffix of %v", o.GetId(), got, err, all)
			}
			res, err := f.srv.GetOrder(f.as(ctx, meshtest.Alice), &ordersv1.GetOrderRequest{OrderId: o.GetId()})
			if err != nil || res.GetOrder().GetStatus() != delivered {
				t.Errorf("GetOrder after watch = %v, %v; want DELIVERED", res.GetOrder(), err)
			}
		})
	}
	wg.Wait()
}

func TestWatchOrderEnds(t *testing.T) {
	t.Parallel()
	never := func(time.Duration) <-chan time.Time { return nil }

	t.Run("final order", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{})
		_, err := create(f, cart("sku-truffle", 3))
		wantStatus(t, err, codes.FailedPrecondition, "payment declined: amount EUR 1350.00 exceeds limit EUR 1000.00")
		reserved, _ := f.inv.calls()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		got, err := watch(ctx, f, reserved[0])
		if err != nil || fmt.Sprint(got) != "[ORDER_STATUS_PAYMENT_DECLINED]" {
			t.Fatalf("watch = %v, %v; want one PAYMENT_DECLINED then EOF", got, err)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{step: time.Hour, after: never})
		o, err := create(f, cart("sku-apple", 1))
		if err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		wctx, wcancel := context.WithCancel(ctx)
		stream, err := inproc.OrdersClient(f.srv).WatchOrder(f.as(wctx, meshtest.Alice), &ordersv1.WatchOrderRequest{OrderId: o.GetId()})
		if err != nil {
			t.Fatalf("WatchOrder: %v", err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first Recv: %v", err)
		}
		wcancel()
		_, err = stream.Recv()
		wantStatus(t, err, codes.Canceled, "context canceled")
	})
	t.Run("server closes", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{step: time.Hour, after: never})
		o, err := create(f, cart("sku-apple", 1))
		if err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		stream, err := inproc.OrdersClient(f.srv).WatchOrder(f.as(ctx, meshtest.Alice), &ordersv1.WatchOrderRequest{OrderId: o.GetId()})
		if err != nil {
			t.Fatalf("WatchOrder: %v", err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first Recv: %v", err)
		}
		// Close returns only once the progression goroutine has stopped.
		if err := f.srv.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		_, err = stream.Recv()
		wantStatus(t, err, codes.Unavailable, "orders service is shutting down")
		_, err = create(f, cart("sku-apple", 1))
		wantStatus(t, err, codes.Unavailable, "orders service is shutting down")
		if err := f.srv.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		stream, err := f.serve(t).WatchOrder(f.as(ctx, meshtest.Alice), &ordersv1.WatchOrderRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		wantStatus(t, err, codes.InvalidArgument, "validation error: order_id: value is required")
		_, err = watch(ctx, f, "ord_nope")
		wantStatus(t, err, codes.NotFound, `order "ord_nope" not found`)
	})
}
