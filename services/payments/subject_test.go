package payments_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/payments"
	"github.com/trustmesh/trustmesh/txn"
)

// Payments records who pays: over mTLS, with orders' mesh Connect client
// forwarding the transaction token of the call it serves, the token's
// subject is on the log line of every Charge, captured or declined; the
// token is not.
func TestChargeLogsTheSubject(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	log := meshtest.NewLog()
	s := payments.New(payments.Config{Limit: 100_00}, log.Logger)
	addr := m.ServeConnect(meshtest.Payments, func(srv *mesh.ConnectServer) error {
		return mesh.Mount(srv, paymentsv1connect.NewPaymentServiceHandler, s)
	})
	creds := m.Credentials(meshtest.Orders)
	opts, err := mesh.ConnectClientOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := mesh.NewHTTPClient(creds, spiffeid.RequireFromString(meshtest.Payments))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	client := paymentsv1connect.NewPaymentServiceClient(hc, "https://"+addr, append(opts, connect.WithGRPC())...)
	tok := m.Token(meshtest.Gateway, meshtest.Alice, "/shop.gateway.v1.StorefrontService/PlaceOrder")
	ctx := txn.NewContext(context.Background(), tok) // as orders' handler has it

	if _, err := client.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: "ord_1", Amount: money("EUR", 5_00)})); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: "ord_2", Amount: money("EUR", 500_00)})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("charge above the limit: %v, want failed_precondition", err)
	}
	for _, want := range [][]string{
		{`msg="payment captured"`, "order_id=ord_1", "subject=" + meshtest.Alice},
		{`msg="payment declined"`, "order_id=ord_2", "subject=" + meshtest.Alice},
	} {
		if !log.HasLine(want...) {
			t.Errorf("no log line has %q:\n%s", want, log.String())
		}
	}
	if sig := tok.Raw()[strings.LastIndexByte(tok.Raw(), '.')+1:]; strings.Contains(log.String(), sig) {
		t.Errorf("the log holds a transaction token:\n%s", log.String())
	}
}
