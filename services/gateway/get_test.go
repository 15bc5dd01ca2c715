package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/inproc"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// bob is a person whom the sample's policy keeps on v1 of the storefront.
const bob = "spiffe://shop.example/user/bob"

// methods records the HTTP method of every call that reaches a handler.
type methods struct {
	mu   sync.Mutex
	seen []string // "GET /shop.gateway.v1.StorefrontService/ListProducts"
}

func (m *methods) interceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			m.mu.Lock()
			m.seen = append(m.seen, req.HTTPMethod()+" "+req.Spec().Procedure)
			m.mu.Unlock()
			return next(ctx, req)
		}
	})
}

// take returns the calls recorded since the last take.
func (m *methods) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.seen
	m.seen = nil
	return seen
}

// authorizedGateway serves both storefronts over mTLS as the sample mesh's
// gateway does: every person may call v1 and only alice v2 (as in
// services/policy.yaml), a transaction token minted for each caller, the
// protos' request rules enforced, and opts, on top of the real orders,
// inventory and payments. It returns the gateway's
// address.
func authorizedGateway(t *testing.T, m *meshtest.Mesh, opts ...mesh.ConnectServerOption) string {
	t.Helper()
	engine, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-call-storefront-v1", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{"/shop.gateway.v1.StorefrontService/*"}},
		{Name: "beta-users-call-storefront-v2", Effect: policy.Allow, From: []string{meshtest.Alice}, To: []string{"/shop.gateway.v2.StorefrontService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(engine, interceptors.WithTxnMinter(m.Minter())) // the edge, minting for orders
	if err != nil {
		t.Fatal(err)
	}
	invSrv, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := inproc.InventoryClient(invSrv)
	ordSrv, err := orders.New(orders.Config{}, inv, payments.New(payments.Config{}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ordSrv.Close() })
	srv, err := gateway.New(gateway.Config{}, inproc.OrdersClient(ordSrv), inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mesh.NewConnectServer(m.Credentials(meshtest.Gateway), append([]mesh.ConnectServerOption{
		mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(), validated(t)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(cs, gatewayv1connect.NewStorefrontServiceHandler, srv); err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(cs, gatewayv2connect.NewStorefrontServiceHandler, gateway.NewV2(srv)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cs.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// The methods without side effects, on both storefronts, are served as GET
// to a client that asks for GET (connect.WithHTTPGet), and as POST to one
// that does not; either way the policy decides exactly as for POST: bob may
// not use v2, by GET no more than by POST, and his call never reaches a
// handler; on v1 he may, and alice's order is as hidden from his GET as
// from his POST.
func TestGetIsAuthorizedLikePost(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	seen := &methods{}
	addr := authorizedGateway(t, m, mesh.WithConnectHandlerOptions(connect.WithInterceptors(seen.interceptor())))
	alice := m.HTTPClient(meshtest.Alice, meshtest.Gateway)
	placed, err := gatewayv1connect.NewStorefrontServiceClient(alice, "https://"+addr).PlaceOrder(t.Context(),
		connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: cart("sku-apple", 1)}))
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	orderID := placed.Msg.GetOrder().GetId()
	seen.take()

	calls := []struct {
		name string
		call func(ctx context.Context, hc *http.Client, opts ...connect.ClientOption) error
	}{
		{"/shop.gateway.v1.StorefrontService/ListProducts", func(ctx context.Context, hc *http.Client, opts ...connect.ClientOption) error {
			_, err := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, opts...).ListProducts(ctx, connect.NewRequest(&gatewayv1.ListProductsRequest{}))
			return err
		}},
		{"/shop.gateway.v1.StorefrontService/GetOrder", func(ctx context.Context, hc *http.Client, opts ...connect.ClientOption) error {
			_, err := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, opts...).GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: orderID}))
			return err
		}},
		{"/shop.gateway.v2.StorefrontService/ListProducts", func(ctx context.Context, hc *http.Client, opts ...connect.ClientOption) error {
			_, err := gatewayv2connect.NewStorefrontServiceClient(hc, "https://"+addr, opts...).ListProducts(ctx, connect.NewRequest(&gatewayv2.ListProductsRequest{PageSize: 2}))
			return err
		}},
		{"/shop.gateway.v2.StorefrontService/GetOrder", func(ctx context.Context, hc *http.Client, opts ...connect.ClientOption) error {
			_, err := gatewayv2connect.NewStorefrontServiceClient(hc, "https://"+addr, opts...).GetOrder(ctx, connect.NewRequest(&gatewayv2.GetOrderRequest{OrderId: orderID}))
			return err
		}},
	}
	callers := []struct {
		name string
		hc   *http.Client
	}{{"alice", alice}, {"bob", m.HTTPClient(bob, meshtest.Gateway)}}
	for _, c := range calls {
		for _, caller := range callers {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, caller.name, method), func(t *testing.T) {
					var opts []connect.ClientOption
					if method == http.MethodGet {
						opts = append(opts, connect.WithHTTPGet())
					}
					err := c.call(t.Context(), caller.hc, opts...)
					denied := caller.name == "bob" && strings.HasPrefix(c.name, "/shop.gateway.v2.")
					got := seen.take()
					switch {
					case denied:
						if connect.CodeOf(err) != connect.CodePermissionDenied {
							t.Fatalf("error = %v, want permission_denied", err)
						}
						if len(got) != 0 {
							t.Fatalf("a denied call reached the handler: %v", got)
						}
						return
					case caller.name == "bob" && strings.HasSuffix(c.name, "/GetOrder"):
						// Allowed, but alice's order is not his.
						if connect.CodeOf(err) != connect.CodeNotFound {
							t.Fatalf("error = %v, want not_found", err)
						}
					case err != nil:
						t.Fatalf("error = %v, want success", err)
					}
					if !slices.Equal(got, []string{method + " " + c.name}) {
						t.Fatalf("the handler got %q, want one %s %s", got, method, c.name)
					}
				})
			}
		}
	}
}

// get sends an HTTP GET as curl would: the Connect protocol's query
// parameters with the request as URL-encoded JSON. It returns the status,
// Content-Type and body.
func get(t *testing.T, hc *http.Client, addr, procedure, message string) (int, string, string) {
	t.Helper()
	q := url.Values{"connect": {"v1"}, "encoding": {"json"}, "message": {message}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+procedure+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", procedure, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), string(body)
}

// Plain HTTP GETs, as the README's curl commands send them: a person lists
// the catalogue and reads an order; a malformed one is refused by the
// proto's rules with invalid_argument (HTTP 400) and a Violation detail;
// bob on v2 gets permission_denied (403); and PlaceOrder, which has side
// effects, is not served as GET.
func TestGetAsCurlSendsIt(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	addr := authorizedGateway(t, m)
	alice := m.HTTPClient(meshtest.Alice, meshtest.Gateway)
	placed, err := gatewayv1connect.NewStorefrontServiceClient(alice, "https://"+addr).PlaceOrder(t.Context(),
		connect.NewRequest(&gatewayv1.PlaceOrderRequest{Items: cart("sku-fig", 2)}))
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	orderID := placed.Msg.GetOrder().GetId()

	type connectError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type string `json:"type"`
		} `json:"details"`
	}
	testCases := []struct {
		name       string
		hc         *http.Client
		procedure  string
		message    string
		status     int
		wantInBody string       // for a success
		wantError  connectError // for a failure
	}{
		{"v1 ListProducts", alice, "/shop.gateway.v1.StorefrontService/ListProducts", `{}`, http.StatusOK,
			`{"id":"sku-apple","name":"Apple","price":{"currencyCode":"EUR","unitsMinor":"45"},"availableQuantity":"100"}`, connectError{}},
		{"v1 GetOrder", alice, "/shop.gateway.v1.StorefrontService/GetOrder", `{"order_id":"` + orderID + `"}`, http.StatusOK,
			`"id":"` + orderID + `","customerId":"spiffe://shop.example/user/alice"`, connectError{}},
		{"v2 ListProducts", alice, "/shop.gateway.v2.StorefrontService/ListProducts", `{"page_size":1}`, http.StatusOK,
			`"nextPageToken":"`, connectError{}},
		{"v2 GetOrder", alice, "/shop.gateway.v2.StorefrontService/GetOrder", `{"order_id":"` + orderID + `"}`, http.StatusOK,
			`"status":"ORDER_STATUS_CONFIRMED"`, connectError{}},
		{"no order_id", alice, "/shop.gateway.v1.StorefrontService/GetOrder", `{"order_id":""}`, http.StatusBadRequest, "",
			connectError{Code: "invalid_argument", Message: "validation error: order_id: value is required"}},
		{"long order_id", alice, "/shop.gateway.v1.StorefrontService/GetOrder", `{"order_id":"` + strings.Repeat("x", 4096) + `"}`, http.StatusBadRequest, "",
			connectError{Code: "invalid_argument", Message: "validation error: order_id: must be at most 128 bytes"}},
		{"bob on v2", m.HTTPClient(bob, meshtest.Gateway), "/shop.gateway.v2.StorefrontService/ListProducts", `{}`, http.StatusForbidden, "",
			connectError{Code: "permission_denied"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			status, contentType, body := get(t, tc.hc, addr, tc.procedure, tc.message)
			if status != tc.status || contentType != "application/json" {
				t.Fatalf("GET = %d %s %.500s, want %d application/json", status, contentType, body, tc.status)
			}
			if tc.status == http.StatusOK {
				// protojson varies its white space on purpose: compare the
				// compacted form.
				var compact bytes.Buffer
				if err := json.Compact(&compact, []byte(body)); err != nil {
					t.Fatalf("body is not JSON: %v: %.500s", err, body)
				}
				if !strings.Contains(compact.String(), tc.wantInBody) {
					t.Fatalf("body = %.500s, want it to hold %s", body, tc.wantInBody)
				}
				return
			}
			var got connectError
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %.500s: %v", body, err)
			}
			if got.Code != tc.wantError.Code || (tc.wantError.Message != "" && got.Message != tc.wantError.Message) {
				t.Fatalf("error = %s %q, want %s %q", got.Code, got.Message, tc.wantError.Code, tc.wantError.Message)
			}
			if got.Code == "invalid_argument" && (len(got.Details) != 1 || got.Details[0].Type != "buf.validate.Violations") {
				t.Fatalf("details = %+v, want one buf.validate.Violations", got.Details)
			}
		})
	}

	t.Run("PlaceOrder", func(t *testing.T) {
		status, _, body := get(t, alice, addr, "/shop.gateway.v1.StorefrontService/PlaceOrder", `{"items":[{"product_id":"sku-apple","quantity":1}]}`)
		if status != http.StatusMethodNotAllowed {
			t.Fatalf("GET PlaceOrder = %d %.300s, want 405", status, body)
		}
	})
}

// A GET costs the caller the same rate-limit token as a POST: with a burst
// of two, alice's POST and GET go through and her next call, GET or POST,
// is resource_exhausted.
func TestGetIsRateLimitedLikePost(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	limiter, err := interceptors.NewRateLimiter(0.001, 2) // one token per 1000 s: none comes back during the test
	if err != nil {
		t.Fatal(err)
	}
	addr := authorizedGateway(t, m, mesh.WithRateLimiter(limiter))
	hc := m.HTTPClient(meshtest.Alice, meshtest.Gateway)
	post := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr)
	get := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, connect.WithHTTPGet())
	list := func(c gatewayv1connect.StorefrontServiceClient) error {
		_, err := c.ListProducts(t.Context(), connect.NewRequest(&gatewayv1.ListProductsRequest{}))
		return err
	}
	for i, step := range []struct {
		client gatewayv1connect.StorefrontServiceClient
		method string
		want   connect.Code // 0 for success
	}{
		{post, "POST", 0},
		{get, "GET", 0},
		{get, "GET", connect.CodeResourceExhausted},
		{post, "POST", connect.CodeResourceExhausted},
	} {
		if err := list(step.client); (step.want == 0 && err != nil) || (step.want != 0 && connect.CodeOf(err) != step.want) {
			t.Fatalf("call %d (%s) = %v, want code %v", i+1, step.method, err, step.want)
		}
	}
}
