package shop_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/gen/shop/orders/v1/ordersv1connect"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
	"github.com/trustmesh/trustmesh/txn"
)

const (
	aliceID = "spiffe://shop.example/user/alice"
	bobID   = "spiffe://shop.example/user/bob"
)

// mintTxn mints, with the SVID of workload name in dir (a development
// PKI), a transaction token for subject, as the gateway mints them: for
// PlaceOrder, valid for ten minutes (the longest a verifier accepts), so
// that a slow run does not see it expire.
func mintTxn(t *testing.T, dir, name, subject string) *txn.Token {
	t.Helper()
	creds, err := shop.LoadCredentials(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := txn.NewMinter(creds.SVID, shop.TrustDomain, txn.WithLifetime(txn.MaxLifetime))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Mint(context.Background(), txn.Request{Subject: spiffeid.RequireFromString(subject), Method: "/shop.gateway.v1.StorefrontService/PlaceOrder"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startAuditedMesh runs the sample mesh with every allowed call audited and
// every service's log in the returned sink.
func startAuditedMesh(t *testing.T) (*shop.Mesh, *logSink) {
	t.Helper()
	logs := &logSink{}
	m := startMesh(t, func(c *shop.Config) {
		c.AuditAllows = 1
		c.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	return m, logs
}

// logLine returns the first line of logs that contains every one of subs.
func logLine(logs *logSink, subs ...string) (string, bool) {
	for line := range strings.Lines(logs.String()) {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(line, s) }) {
			return line, true
		}
	}
	return "", false
}

// waitLogLine is logLine, polled for up to ten seconds (a server logs its
// audit line as it answers, so the client may see the answer first).
func waitLogLine(t *testing.T, logs *logSink, subs ...string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if line, ok := logLine(logs, subs...); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line has %q:\n%s", subs, logs.String())
		}
	}
}

// TestOrdersNeedAPersonsTransactionToken calls orders directly, over real
// mTLS with the gateway's own certificate, on grpc-go and connect-go
// clients: without a transaction token the call is refused as
// unauthenticated, and so it is with a token that a workload other than the
// gateway signed, or one from a CA the mesh does not trust; a token the
// gateway's key minted for a workload rather than a person is denied;
// with alice's token the call goes through, sees alice's order and not bob's.
func TestOrdersNeedAPersonsTransactionToken(t *testing.T) {
	t.Parallel()
	m, logs := startAuditedMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// alice places an order through the gateway.
	aliceGW := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "alice", shop.Gateway))
	placed, err := aliceGW.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}})
	if err != nil {
		t.Fatalf("alice PlaceOrder through the gateway: %v", err)
	}
	orderID := placed.GetOrder().GetId()

	foreign := t.TempDir()
	if _, err := sample.InitCerts(foreign, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	alice := mintTxn(t, m.CertDir, "gateway", aliceID)
	tokens := map[string]string{
		"alice":     alice.Raw(),
		"bob":       mintTxn(t, m.CertDir, "gateway", bobID).Raw(),
		"admin":     mintTxn(t, m.CertDir, "gateway", "spiffe://shop.example/ns/ops/sa/admin").Raw(),
		"by-orders": mintTxn(t, m.CertDir, "orders", aliceID).Raw(),
		"foreign":   mintTxn(t, foreign, "gateway", aliceID).Raw(),
	}

	gw, err := shop.LoadCredentials(m.CertDir, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	grpcOrders := ordersv1.NewOrderServiceClient(dialAs(t, m, "gateway", shop.Orders))
	hc, err := mesh.NewHTTPClient(gw, shop.WorkloadID(shop.Orders))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	connectOrders := ordersv1connect.NewOrderServiceClient(hc, "https://"+m.Addrs[shop.Orders], connect.WithGRPC())
	clients := map[string]func(ctx context.Context, token string) (*ordersv1.Order, error){
		"grpc-go": func(ctx context.Context, token string) (*ordersv1.Order, error) {
			if token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, txn.MetadataKey, token)
			}
			res, err := grpcOrders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: orderID})
			return res.GetOrder(), err
		},
		"connect-go": func(ctx context.Context, token string) (*ordersv1.Order, error) {
			req := connect.NewRequest(&ordersv1.GetOrderRequest{OrderId: orderID})
			if token != "" {
				req.Header().Set(txn.HeaderName, token)
			}
			res, err := connectOrders.GetOrder(ctx, req)
			if err != nil {
				return nil, err
			}
			return res.Msg.GetOrder(), nil
		},
	}
	const method = "/shop.orders.v1.OrderService/GetOrder"
	testCases := []struct {
		name, token string
		code        codes.Code
		msg         string // the message, or its start when it ends with ": "
	}{
		{"no-token", "", codes.Unauthenticated, "transaction token required for " + method},
		{"signed-by-orders", tokens["by-orders"], codes.Unauthenticated, "invalid transaction token: txn: signer not a minter: "},
		{"signed-by-a-foreign-ca", tokens["foreign"], codes.Unauthenticated, "invalid transaction token: txn: signer not trusted: "},
		{"truncated", tokens["alice"][:len(tokens["alice"])-8], codes.Unauthenticated, "invalid transaction token: txn: "},
		{"for-a-workload", tokens["admin"], codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/gateway may not call " + method},
		{"for-bob", tokens["bob"], codes.NotFound, `order "` + orderID + `" not found`},
		{"for-alice", tokens["alice"], codes.OK, ""},
	}
	for kind, get := range clients {
		for _, tc := range testCases {
			order, err := get(ctx, tc.token)
			code, msg := codeOf(err), ""
			if err != nil {
				msg = strings.TrimPrefix(err.Error(), "rpc error: code = "+code.String()+" desc = ")
				msg = strings.TrimPrefix(msg, connect.Code(code).String()+": ")
			}
			if code != tc.code || (strings.HasSuffix(tc.msg, ": ") && !strings.HasPrefix(msg, tc.msg)) || (!strings.HasSuffix(tc.msg, ": ") && msg != tc.msg) {
				t.Errorf("%s %s: %v %q, want %v %q", kind, tc.name, code, msg, tc.code, tc.msg)
			}
			if tc.code == codes.OK && order.GetCustomerId() != aliceID {
				t.Errorf("%s %s: order %v, want alice's", kind, tc.name, order)
			}
		}
	}

	// orders audits each decision with the subject and the transaction,
	// and a refused token with its reason; never the token itself.
	waitLogLine(t, logs, "service=orders", `msg="authz decision"`, "method="+method, "decision=allow",
		"subject="+aliceID, "txn="+alice.ID())
	// The first refusal is written in full (the no-token case came first);
	// the rest of that second are counted, as with every repeated refusal.
	waitLogLine(t, logs, "service=orders", `msg="authz transaction token refused"`, "method="+method, `error="transaction token required for `+method)
	waitLogLine(t, logs, "service=orders", `msg="authz transaction token refused repeated"`, "method="+method)
	for name, tok := range tokens {
		if sig := tok[strings.LastIndexByte(tok, '.')+1:]; strings.Contains(logs.String(), sig) {
			t.Errorf("the log holds %s's token", name)
		}
	}
}

// TestPlaceOrderCarriesTheCallersSubject: through the gateway, each hop
// verifies the token the gateway minted for its caller, and records it:
// orders places the order for alice and logs her as the subject, inventory
// and payments log her on their Reserve and Charge lines, and every
// service's audit event has her and the same transaction id. A token that
// alice sends the gateway herself (here one for bob, minted with the
// gateway's own key) changes nothing: the edge ignores it and mints its own.
func TestPlaceOrderCarriesTheCallersSubject(t *testing.T) {
	t.Parallel()
	m, logs := startAuditedMesh(t)
	creds, err := shop.LoadCredentials(m.CertDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	hc, err := mesh.NewHTTPClient(creds, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	gw := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+m.Addrs[shop.Gateway])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: []*gatewayv1.CartItem{{ProductId: "sku-fig", Quantity: 1}}})
	bobs := mintTxn(t, m.CertDir, "gateway", bobID)
	req.Header().Set(txn.HeaderName, bobs.Raw())
	res, err := gw.PlaceOrder(ctx, req)
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	order := res.Msg.GetOrder()
	if order.GetCustomerId() != aliceID {
		t.Fatalf("order placed for %q, want alice", order.GetCustomerId())
	}

	confirmed := waitLogLine(t, logs, "service=orders", `msg="order confirmed"`, "order_id="+order.GetId())
	if !strings.Contains(confirmed, "subject="+aliceID) {
		t.Errorf("orders' line does not name alice as the subject: %s", confirmed)
	}
	waitLogLine(t, logs, "service=inventory", `msg="stock reserved"`, "order_id="+order.GetId(), "subject="+aliceID)
	waitLogLine(t, logs, "service=payments", `msg="payment captured"`, "order_id="+order.GetId(), "subject="+aliceID)
	// One transaction: the gateway's audit event names the txn id that
	// every hop's carries.
	edge := waitLogLine(t, logs, "service=gateway", `msg="authz decision"`, "method=/shop.gateway.v1.StorefrontService/PlaceOrder", "subject="+aliceID)
	_, after, _ := strings.Cut(edge, "txn=")
	id, _, _ := strings.Cut(strings.TrimSpace(after), " ")
	if len(id) != 32 || id == bobs.ID() {
		t.Fatalf("gateway's audit event has txn %q, want a fresh transaction id: %s", id, edge)
	}
	for _, hop := range []string{"method=/shop.orders.v1.OrderService/CreateOrder", "method=/shop.inventory.v1.InventoryService/Reserve", "method=/shop.payments.v1.PaymentService/Charge"} {
		waitLogLine(t, logs, `msg="authz decision"`, hop, "decision=allow", "subject="+aliceID, "txn="+id)
	}
	if _, ok := logLine(logs, bobID); ok {
		t.Errorf("bob's token, sent to the gateway, reached the log:\n%s", logs.String())
	}
}

// TestGrpcurlTransactionTokens: with the real grpcurl, a person's order
// through the gateway works; orders, called directly with the gateway's own
// certificate, refuses a call without a token and one with a token that
// orders' key signed, and answers one with a token the gateway's key minted
// for alice (as the README shows).
func TestGrpcurlTransactionTokens(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	out, err := grpcurl(t, aliceFlags(m.CertDir), "-d", `{"items":[{"product_id":"sku-apple","quantity":1}]}`,
		gatewayTarget(m), "shop.gateway.v1.StorefrontService/PlaceOrder")
	if err != nil {
		t.Fatalf("grpcurl PlaceOrder through the gateway: %v\n%s", err, out)
	}
	var placed struct {
		Order struct {
			ID         string `json:"id"`
			CustomerID string `json:"customerId"`
		} `json:"order"`
	}
	if err := json.Unmarshal([]byte(out), &placed); err != nil || placed.Order.ID == "" || placed.Order.CustomerID != aliceID {
		t.Fatalf("PlaceOrder output has no order of alice's (%v):\n%s", err, out)
	}

	asGateway := []string{"-cacert", filepath.Join(m.CertDir, "bundle.pem"),
		"-cert", filepath.Join(m.CertDir, "gateway.pem"), "-key", filepath.Join(m.CertDir, "gateway-key.pem"),
		"-import-path", filepath.Join(testtool.RepoRoot(t), "proto"), "-proto", "shop/orders/v1/orders.proto"}
	orders := "localhost:" + port(m.Addrs[shop.Orders])
	getOrder := []string{"-d", `{"order_id":"` + placed.Order.ID + `"}`, orders, "shop.orders.v1.OrderService/GetOrder"}
	header := func(tok string) []string { return []string{"-H", txn.MetadataKey + ": " + tok} }
	testCases := []struct {
		name string
		args []string
		want []string // in grpcurl's output
		ok   bool
	}{
		{"no-token", getOrder,
			[]string{"Code: Unauthenticated", "Message: transaction token required for /shop.orders.v1.OrderService/GetOrder"}, false},
		{"signed-by-orders", slices.Concat(header(mintTxn(t, m.CertDir, "orders", aliceID).Raw()), getOrder),
			[]string{"Code: Unauthenticated", "Message: invalid transaction token: txn: signer not a minter: "}, false},
		{"alice", slices.Concat(header(mintTxn(t, m.CertDir, "gateway", aliceID).Raw()), getOrder),
			[]string{`"id": "` + placed.Order.ID + `"`, `"customerId": "` + aliceID + `"`}, true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := grpcurl(t, asGateway, tc.args...)
			if (err == nil) != tc.ok {
				t.Errorf("grpcurl err = %v, want ok=%v\n%s", err, tc.ok, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("grpcurl output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
