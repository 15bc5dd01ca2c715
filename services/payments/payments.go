package payments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/services/internal/downstream"
	"github.com/trustmesh/trustmesh/services/internal/input"
)

// DefaultLimit is the largest charge accepted by default, in minor units:
// 1000.00 in a two-decimal currency.
const DefaultLimit = 100000

// DefaultCurrency is the currency charged by default.
const DefaultCurrency = "EUR"

// MaxIDBytes is the longest order or payment ID that the server accepts, in
// bytes: a longer one is CodeInvalidArgument.
const MaxIDBytes = input.MaxIDBytes

// Config configures a [Server].
type Config struct {
	// Limit is the largest amount one charge may take, in minor units of
	// Currency; larger charges are declined. By default (zero or negative),
	// [DefaultLimit].
	Limit int64
	// Currency is the ISO 4217 code of the only currency charged; other
	// currencies are InvalidArgument. By default (empty), [DefaultCurrency].
	Currency string
}

// Server implements [paymentsv1connect.PaymentServiceHandler] with an
// in-memory ledger. Create it with [New], and serve it with the request
// rules enforced (validation.Connect): its methods rely on them.
type Server struct {
	limit    int64
	currency string
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	byID    map[string]*paymentsv1.Payment // guarded by mu
	byOrder map[string]*paymentsv1.Payment // guarded by mu; same values as byID
}

var _ paymentsv1connect.PaymentServiceHandler = (*Server)(nil)

// New returns a Server with an empty ledger. A nil log discards log output.
func New(cfg Config, log *slog.Logger) *Server {
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.Currency == "" {
		cfg.Currency = DefaultCurrency
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		limit:    cfg.Limit,
		currency: cfg.Currency,
		log:      log,
		now:      time.Now,
		byID:     make(map[string]*paymentsv1.Payment),
		byOrder:  make(map[string]*paymentsv1.Payment),
	}
}

// Charge takes req's amount for its order. An amount above the limit is
// declined with CodeFailedPrecondition and leaves nothing in the ledger, so
// the same charge is declined again. Charging an order again with the same
// amount returns the existing payment (also after a refund); with another
// amount it is CodeAlreadyExists. An amount in another currency than the
// configured one is CodeInvalidArgument. req keeps the proto's rules (see
// services/internal/validation): an order ID of 1 to [MaxIDBytes] bytes and
// an amount with an ISO 4217 code and positive units. The log line of a
// charge names the subject of the call's transaction token (who pays),
// when it carries one.
func (s *Server) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	msg := req.Msg
	if err := s.validateCharge(msg); err != nil {
		return nil, err
	}
	amount := msg.GetAmount()

	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.byOrder[msg.GetOrderId()]; ok {
		if p.GetAmount().GetUnitsMinor() != amount.GetUnitsMinor() {
			return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf(
				"order %q was already charged %s", input.Clip(msg.GetOrderId()), format(p.GetAmount())))
		}
		return connect.NewResponse(&paymentsv1.ChargeResponse{Payment: proto.CloneOf(p)}), nil
	}
	if amount.GetUnitsMinor() > s.limit {
		limit := &moneyv1.Money{CurrencyCode: s.currency, UnitsMinor: s.limit}
		s.log.Info("payment declined", slog.String("order_id", input.Clip(msg.GetOrderId())),
			slog.Int64("amount_minor", amount.GetUnitsMinor()), slog.Int64("limit_minor", s.limit), downstream.Subject(ctx))
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"payment declined: amount %s exceeds limit %s", format(amount), format(limit)))
	}
	p := &paymentsv1.Payment{
		Id:         newID("pay_"),
		OrderId:    msg.GetOrderId(),
		Amount:     proto.CloneOf(amount),
		Status:     paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
		CreateTime: timestamppb.New(s.now()),
	}
	s.byID[p.GetId()] = p
	s.byOrder[p.GetOrderId()] = p
	s.log.Info("payment captured", slog.String("order_id", input.Clip(p.GetOrderId())),
		slog.String("payment_id", p.GetId()), slog.Int64("amount_minor", amount.GetUnitsMinor()), downstream.Subject(ctx))
	return connect.NewResponse(&paymentsv1.ChargeResponse{Payment: proto.CloneOf(p)}), nil
}

// validateCharge checks what the proto's rules cannot: that the amount is in
// the server's currency.
func (s *Server) validateCharge(msg *paymentsv1.ChargeRequest) error {
	if c := msg.GetAmount().GetCurrencyCode(); c != s.currency {
		return invalid(fmt.Sprintf("amount.currency_code: unsupported currency %q, want %q", input.Clip(c), s.currency))
	}
	return nil
}

// Refund marks a captured payment refunded. Refunding again returns the
// refunded payment; an unknown payment is CodeNotFound. The payment ID has
// 1 to [MaxIDBytes] bytes (the proto's rule).
func (s *Server) Refund(_ context.Context, req *connect.Request[paymentsv1.RefundRequest]) (*connect.Response[paymentsv1.RefundResponse], error) {
	id := req.Msg.GetPaymentId()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byID[id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("payment_id: unknown payment %q", input.Clip(id)))
	}
	if p.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		p.Status = paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
		p.RefundTime = timestamppb.New(s.now())
		s.log.Info("payment refunded", slog.String("payment_id", id), slog.String("order_id", p.GetOrderId()))
	}
	return connect.NewResponse(&paymentsv1.RefundResponse{Payment: proto.CloneOf(p)}), nil
}

func invalid(msg string) error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
}

// newID returns prefix followed by 16 random hex digits.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	return prefix + hex.EncodeToString(b[:])
}
