package payments_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/payments"
)

// maxMessage bounds the message of a refused oversized field, whatever the
// field's length: far below any client's header limit (16 KiB for grpcio).
const maxMessage = 256

// An oversized ID (or currency code), sent over mTLS as orders or the
// operator would, on gRPC and on Connect, is refused at once with
// InvalidArgument and a short message (a 1 MB one came back whole in
// grpc-message, over every client's header limit), and nothing of it
// reaches the log.
func TestLongIDsAreRefused(t *testing.T) {
	t.Parallel()
	log := meshtest.NewLog()
	impl := payments.New(payments.Config{}, log.Logger)

	for _, protocol := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"connect", nil},
	} {
		client := serve(t, impl, []mesh.ConnectServerOption{mesh.WithLogger(log.Logger)}, protocol.opts...)
		for _, n := range []int{1 << 20, 200 << 10} {
			long := strings.Repeat("x", n)
			testCases := []struct {
				name string
				call func(context.Context) error
				msg  string
			}{
				{"Charge order_id", func(ctx context.Context) error {
					_, err := client.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: long, Amount: money("EUR", 100)}))
					return err
				}, "validation error: order_id: must be at most 128 bytes"},
				{"Charge currency_code", func(ctx context.Context) error {
					_, err := client.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: "o1", Amount: money(long, 100)}))
					return err
				}, "validation error: amount.currency_code: does not match regex pattern `^[A-Z]{3}$`"},
				{"Refund payment_id", func(ctx context.Context) error {
					_, err := client.Refund(ctx, connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: long}))
					return err
				}, "validation error: payment_id: must be at most 128 bytes"},
			}
			for _, tc := range testCases {
				t.Run(fmt.Sprintf("%s/%s/%d", protocol.name, tc.name, n), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					err := tc.call(ctx)
					var ce *connect.Error
					if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Message() != tc.msg {
						t.Fatalf("error = %.300v, want invalid_argument %q", err, tc.msg)
					}
					if len(ce.Message()) > maxMessage {
						t.Fatalf("message of %d bytes, want at most %d", len(ce.Message()), maxMessage)
					}
				})
			}
		}
	}
	if got := log.String(); strings.Contains(got, strings.Repeat("x", input.ClipBytes+1)) {
		t.Fatalf("the log holds more than %d bytes of an oversized ID:\n%.1000s", input.ClipBytes, got)
	}
}
