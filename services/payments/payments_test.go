package payments_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/internal/validation"
	"github.com/trustmesh/trustmesh/services/payments"
)

func money(code string, minor int64) *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: code, UnitsMinor: minor}
}

// serve serves s over mTLS as payments, with the proto's request rules
// enforced as in the mesh, until the test ends, and returns a client that
// calls it as orders with opts.
func serve(t *testing.T, s *payments.Server, serverOpts []mesh.ConnectServerOption, opts ...connect.ClientOption) paymentsv1connect.PaymentServiceClient {
	t.Helper()
	m := meshtest.New(t)
	v, err := validation.Connect()
	if err != nil {
		t.Fatal(err)
	}
	addr := m.ServeConnect(meshtest.Payments, func(srv *mesh.ConnectServer) error {
		return mesh.Mount(srv, paymentsv1connect.NewPaymentServiceHandler, s)
	}, append([]mesh.ConnectServerOption{v}, serverOpts...)...)
	return paymentsv1connect.NewPaymentServiceClient(m.HTTPClient(meshtest.Orders, meshtest.Payments), "https://"+addr, opts...)
}

// charger is what charge calls: a Server, or a client of one.
type charger interface {
	Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error)
}

func charge(s charger, order string, amount *moneyv1.Money) (*paymentsv1.Payment, error) {
	res, err := s.Charge(context.Background(), connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: order, Amount: amount}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetPayment(), nil
}

func wantError(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	if got := err.(*connect.Error).Message(); got != msg {
		t.Fatalf("message = %q, want %q", got, msg)
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name   string
		cfg    payments.Config
		order  string
		amount *moneyv1.Money
		code   connect.Code // 0 for success
		msg    string
	}{
		{name: "at the default limit", order: "o1", amount: money("EUR", 100000)},
		{name: "above the default limit", order: "o1", amount: money("EUR", 150000),
			code: connect.CodeFailedPrecondition, msg: "payment declined: amount EUR 1500.00 exceeds limit EUR 1000.00"},
		{name: "above a configured limit", cfg: payments.Config{Limit: 2500}, order: "o1", amount: money("EUR", 2501),
			code: connect.CodeFailedPrecondition, msg: "payment declined: amount EUR 25.01 exceeds limit EUR 25.00"},
		{name: "zero-decimal currency", cfg: payments.Config{Currency: "JPY", Limit: 10000}, order: "o1", amount: money("JPY", 12000),
			code: connect.CodeFailedPrecondition, msg: "payment declined: amount JPY 12000 exceeds limit JPY 10000"},
		{name: "no order id", amount: money("EUR", 1),
			code: connect.CodeInvalidArgument, msg: "validation error: order_id: value is required"},
		{name: "no amount", order: "o1",
			code: connect.CodeInvalidArgument, msg: "validation error: amount: value is required"},
		{name: "other currency", order: "o1", amount: money("USD", 1),
			code: connect.CodeInvalidArgument, msg: `amount.currency_code: unsupported currency "USD", want "EUR"`},
		{name: "not a currency code", order: "o1", amount: money("euro", 1),
			code: connect.CodeInvalidArgument, msg: "validation error: amount.currency_code: does not match regex pattern `^[A-Z]{3}$`"},
		{name: "zero amount", order: "o1", amount: money("EUR", 0),
			code: connect.CodeInvalidArgument, msg: "validation error: amount: units_minor must be positive"},
		{name: "negative amount", order: "o1", amount: money("EUR", -5),
			code: connect.CodeInvalidArgument, msg: "validation error: amount: units_minor must be positive"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := charge(serve(t, payments.New(tc.cfg, nil), nil), tc.order, tc.amount)
			if tc.code != 0 {
				wantError(t, err, tc.code, tc.msg)
				return
			}
			if err != nil {
				t.Fatalf("Charge: %v", err)
			}
			if !strings.HasPrefix(p.GetId(), "pay_") || p.GetOrderId() != tc.order ||
				p.GetAmount().GetUnitsMinor() != tc.amount.GetUnitsMinor() ||
				p.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED || p.GetCreateTime() == nil {
				t.Fatalf("payment = %v", p)
			}
		})
	}
}

func TestChargeIsIdempotentPerOrder(t *testing.T) {
	t.Parallel()
	s := payments.New(payments.Config{}, nil)
	first, err := charge(s, "o1", money("EUR", 1999))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	again, err := charge(s, "o1", money("EUR", 1999))
	if err != nil {
		t.Fatalf("second Charge: %v", err)
	}
	if again.GetId() != first.GetId() {
		t.Fatalf("second Charge made payment %s, want %s", again.GetId(), first.GetId())
	}
	_, err = charge(s, "o1", money("EUR", 2000))
	wantError(t, err, connect.CodeAlreadyExists, `order "o1" was already charged EUR 19.99`)

	other, err := charge(s, "o2", money("EUR", 1999))
	if err != nil {
		t.Fatalf("Charge o2: %v", err)
	}
	if other.GetId() == first.GetId() {
		t.Fatalf("two orders share payment %s", other.GetId())
	}
	// A decline leaves nothing behind: the same charge is declined again.
	for range 2 {
		_, err = charge(s, "o3", money("EUR", 100001))
		wantError(t, err, connect.CodeFailedPrecondition, "payment declined: amount EUR 1000.01 exceeds limit EUR 1000.00")
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := payments.New(payments.Config{}, nil)
	p, err := charge(s, "o1", money("EUR", 500))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	for i := range 2 { // the second Refund is a no-op
		res, err := s.Refund(ctx, connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: p.GetId()}))
		if err != nil {
			t.Fatalf("Refund #%d: %v", i+1, err)
		}
		if got := res.Msg.GetPayment(); got.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED || got.GetRefundTime() == nil {
			t.Fatalf("Refund #%d: payment = %v", i+1, got)
		}
	}

	testCases := []struct {
		name string
		id   string
		code connect.Code
		msg  string
	}{
		{"no payment id", "", connect.CodeInvalidArgument, "validation error: payment_id: value is required"},
		{"unknown payment", "pay_nope", connect.CodeNotFound, `payment_id: unknown payment "pay_nope"`},
	}
	client := serve(t, s, nil)
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Refund(ctx, connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: tc.id}))
			wantError(t, err, tc.code, tc.msg)
		})
	}
}

func TestConcurrentChargesOnePaymentPerOrder(t *testing.T) {
	t.Parallel()
	s := payments.New(payments.Config{}, nil)
	const orders, attempts = 10, 10
	ids := make([][]string, orders)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for o := range orders {
		for range attempts {
			wg.Go(func() {
				p, err := charge(s, fmt.Sprintf("o%d", o), money("EUR", 100))
				if err != nil {
					t.Errorf("Charge: %v", err)
					return
				}
				mu.Lock()
				ids[o] = append(ids[o], p.GetId())
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	seen := make(map[string]bool)
	for o, got := range ids {
		for _, id := range got {
			if id != got[0] {
				t.Fatalf("order o%d got payments %v, want one", o, got)
			}
		}
		if seen[got[0]] {
			t.Fatalf("payment %s shared between orders", got[0])
		}
		seen[got[0]] = true
	}
}
