package interceptors_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/policy"
)

const (
	proxyID     = "spiffe://shop.example/ns/edge/sa/lb"
	ordersID    = "spiffe://shop.example/ns/shop/sa/orders"
	paymentsID  = "spiffe://shop.example/ns/shop/sa/payments"
	inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
	reserve     = "/shop.inventory.v1.InventoryService/Reserve"
)

// proxyAuthorizer: orders may reserve; the proxy itself may not; the proxy
// forwards JWT-SVIDs for the inventory server.
func proxyAuthorizer(t *testing.T, ca *certs.CA, logs *bytes.Buffer) *interceptors.Authorizer {
	t.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-reserves", Effect: policy.Allow, From: []string{ordersID}, To: []string{reserve}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e,
		interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))),
		interceptors.WithAuditAllows(1),
		interceptors.WithFrontProxies(interceptors.FrontProxies{
			IDs:      []spiffeid.ID{spiffeid.RequireFromString(proxyID)},
			Bundles:  ca,
			Audience: spiffeid.RequireFromString(inventoryID),
		}))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestFrontProxies: on a connection from a front proxy the caller is the
// subject of the JWT-SVID the call carries, and the policy decides on it;
// from any other peer a JWT-SVID changes nothing. In the grpc-go tap and
// the HTTP middleware alike.
func TestFrontProxies(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(ca *certs.CA, id, aud string, now time.Time) string {
		svid, err := ca.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(id), Audience: []string{aud}, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + svid.Marshal()
	}
	forOrders := mint(ca, ordersID, inventoryID, time.Time{})
	testCases := []struct {
		name     string
		peer     string
		auth     []string
		wantCode codes.Code
		wantMsg  string
		wantLog  string // the audit line, "" for none
	}{
		{"proxy-with-a-jwt-svid-of-an-allowed-caller", proxyID, []string{forOrders}, codes.OK, "",
			`level=INFO msg="authz decision" caller=` + ordersID + ` method=` + reserve + ` decision=allow rule=orders-reserves dry_run=false via=` + proxyID},
		{"proxy-with-a-jwt-svid-of-another-caller", proxyID, []string{mint(ca, paymentsID, inventoryID, time.Time{})}, codes.PermissionDenied, paymentsID + " may not call " + reserve,
			`level=WARN msg="authz decision" caller=` + paymentsID + ` method=` + reserve + ` decision=deny rule=default-deny dry_run=false via=` + proxyID},
		{"proxy-without-a-jwt-svid", proxyID, nil, codes.Unauthenticated, "JWT-SVID required: calls through front proxy " + proxyID + " must carry one (authorization: Bearer)",
			`level=WARN msg="authz JWT-SVID refused" via=` + proxyID + ` method=` + reserve + ` decision=deny error="JWT-SVID required: calls through front proxy ` + proxyID + ` must carry one (authorization: Bearer)"`},
		{"proxy-jwt-svid-for-another-audience", proxyID, []string{mint(ca, ordersID, paymentsID, time.Time{})}, codes.Unauthenticated,
			`invalid JWT-SVID: identity: jwt-svid: aud ["` + paymentsID + `"] does not contain "` + inventoryID + `"`, ""},
		{"proxy-expired-jwt-svid", proxyID, []string{mint(ca, ordersID, inventoryID, time.Now().Add(-time.Hour))}, codes.Unauthenticated,
			"invalid JWT-SVID: identity: jwt-svid: expired at ", ""},
		{"proxy-jwt-svid-of-an-untrusted-key", proxyID, []string{mint(other, ordersID, inventoryID, time.Time{})}, codes.Unauthenticated,
			`invalid JWT-SVID: identity: jwt-svid: no jwt-svid key "` + other.JWTKeyID() + `" in the bundle of trust domain "shop.example"`, ""},
		{"proxy-two-authorization-headers", proxyID, []string{forOrders, forOrders}, codes.Unauthenticated, "invalid JWT-SVID: more than one authorization header", ""},
		{"proxy-basic-auth", proxyID, []string{"Basic b3JkZXJzOnB3"}, codes.Unauthenticated, `invalid JWT-SVID: authorization header is not "Bearer TOKEN"`, ""},
		// Any other peer: the JWT-SVID changes nothing.
		{"other-peer-with-a-jwt-svid-of-an-allowed-caller", gatewayID, []string{forOrders}, codes.PermissionDenied, gatewayID + " may not call " + reserve,
			`level=WARN msg="authz decision" caller=` + gatewayID + ` method=` + reserve + ` decision=deny rule=default-deny dry_run=false`},
		{"allowed-peer-with-a-jwt-svid-of-another-caller", ordersID, []string{mint(ca, paymentsID, inventoryID, time.Time{})}, codes.OK, "",
			`level=INFO msg="authz decision" caller=` + ordersID + ` method=` + reserve + ` decision=allow rule=orders-reserves dry_run=false`},
		{"allowed-peer-with-garbage", ordersID, []string{"Bearer x.y.z"}, codes.OK, "", ""},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := func(stack string, err error, logs *bytes.Buffer) {
				t.Helper()
				st := status.Convert(err)
				if st.Code() != tc.wantCode || !strings.HasPrefix(st.Message(), tc.wantMsg) {
					t.Errorf("%s: %v %q, want %v %q", stack, st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
				}
				if tc.wantLog != "" && strings.TrimSpace(logs.String()) != tc.wantLog {
					t.Errorf("%s: audit\n got: %s\nwant: %s", stack, strings.TrimSpace(logs.String()), tc.wantLog)
				}
			}

			var logs bytes.Buffer
			a := proxyAuthorizer(t, ca, &logs)
			md := metadata.MD{}
			for _, v := range tc.auth {
				md.Append("authorization", v)
			}
			ctx, err := a.TapHandle()(callerContext(tc.peer), &tap.Info{FullMethodName: reserve, Header: md})
			check("tap", err, &logs)
			p, ok := interceptors.ProxiedFromContext(ctx)
			// A verified JWT-SVID is in the context, allowed or not.
			if proxied := tc.peer == proxyID && tc.wantCode != codes.Unauthenticated; ok != proxied {
				t.Errorf("tap: ProxiedFromContext ok = %v, want %v", ok, proxied)
			} else if ok && (p.Caller == nil || !strings.Contains(tc.wantLog, "caller="+p.Caller.ID.String()+" ") || p.Via.ID.String() != proxyID) {
				t.Errorf("tap: Proxied = %+v", p)
			}

			logs.Reset()
			a = proxyAuthorizer(t, ca, &logs) // a fresh repeat window
			// A plain request: refusals come back as 401 or 403 with the
			// message as the body.
			req := httptest.NewRequest(http.MethodPost, reserve, nil).WithContext(
				interceptors.VerifiedHTTPContext(identity.Principal{ID: spiffeid.RequireFromString(tc.peer)}))
			for _, v := range tc.auth {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			var handled bool
			a.HTTPHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				handled = true
				if _, ok := interceptors.ProxiedFromContext(r.Context()); ok != (tc.peer == proxyID) {
					t.Errorf("http: ProxiedFromContext ok = %v", ok)
				}
			})).ServeHTTP(rec, req)
			check("http", httpStatusOf(rec), &logs)
			if handled != (tc.wantCode == codes.OK) {
				t.Errorf("http: handler ran = %v, want %v", handled, tc.wantCode == codes.OK)
			}
		})
	}
}

// TestWithFrontProxiesRefuses: the option needs proxies, bundles and an
// audience.
func TestWithFrontProxiesRefuses(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	proxy := []spiffeid.ID{spiffeid.RequireFromString(proxyID)}
	aud := spiffeid.RequireFromString(inventoryID)
	for _, tc := range []struct {
		fp      interceptors.FrontProxies
		wantErr string
	}{
		{interceptors.FrontProxies{Bundles: ca, Audience: aud}, "interceptors: WithFrontProxies: no front proxy SPIFFE IDs"},
		{interceptors.FrontProxies{IDs: proxy, Audience: aud}, "interceptors: WithFrontProxies: no bundles to verify JWT-SVIDs with"},
		{interceptors.FrontProxies{IDs: proxy, Bundles: ca}, "interceptors: WithFrontProxies: no audience (the server's own SPIFFE ID)"},
		{interceptors.FrontProxies{IDs: []spiffeid.ID{{}}, Bundles: ca, Audience: aud}, "interceptors: WithFrontProxies: a zero SPIFFE ID among the front proxies"},
	} {
		if _, err := interceptors.NewAuthorizer(e, interceptors.WithFrontProxies(tc.fp)); err == nil || err.Error() != tc.wantErr {
			t.Errorf("NewAuthorizer: %v, want %s", err, tc.wantErr)
		}
		a, err := interceptors.NewAuthorizer(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WithFrontProxies(tc.fp); err == nil || err.Error() != tc.wantErr {
			t.Errorf("Authorizer.WithFrontProxies: %v, want %s", err, tc.wantErr)
		}
	}
}

// httpStatusOf reads the outcome of a plain HTTP request refused by the
// HTTP middleware as a gRPC status.
func httpStatusOf(rec *httptest.ResponseRecorder) error {
	msg := strings.TrimSuffix(rec.Body.String(), "\n")
	switch rec.Code {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return status.Error(codes.Unauthenticated, msg)
	case http.StatusForbidden:
		return status.Error(codes.PermissionDenied, msg)
	default:
		return status.Errorf(codes.Unknown, "HTTP %d: %s", rec.Code, msg)
	}
}
