package shop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/txn"
)

// The callers of the decision matrix: the four workloads, the operator and
// three people.
var matrixCallers = map[string]string{
	"gateway":   "spiffe://shop.example/ns/shop/sa/gateway",
	"orders":    "spiffe://shop.example/ns/shop/sa/orders",
	"inventory": "spiffe://shop.example/ns/shop/sa/inventory",
	"payments":  "spiffe://shop.example/ns/shop/sa/payments",
	"admin":     "spiffe://shop.example/ns/ops/sa/admin",
	"alice":     "spiffe://shop.example/user/alice",
	"bob":       "spiffe://shop.example/user/bob",
	"mallory":   "spiffe://shop.example/user/mallory",
}

var (
	health     = []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
	reflection = []string{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}
	users      = []string{"alice", "bob", "mallory"}
)

// matrixMethods lists what each service serves.
var matrixMethods = map[string][]string{
	shop.Gateway: slices.Concat(
		methods("shop.gateway.v1.StorefrontService", "ListProducts", "PlaceOrder", "GetOrder", "WatchOrder"),
		methods("shop.gateway.v2.StorefrontService", "ListProducts", "PlaceOrder", "GetOrder", "WatchOrder"),
		health, reflection),
	shop.Orders:    slices.Concat(methods("shop.orders.v1.OrderService", "CreateOrder", "GetOrder", "WatchOrder"), health, reflection),
	shop.Inventory: slices.Concat(methods("shop.inventory.v1.InventoryService", "ListProducts", "Reserve", "Release", "Restock"), health, reflection),
	shop.Payments:  slices.Concat(methods("shop.payments.v1.PaymentService", "Charge", "Refund"), health, reflection),
}

func methods(svc string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "/" + svc + "/" + n
	}
	return out
}

// expectAllowed is DESIGN.md's table, written out independently of the
// policy file and the protos: who may call what, on which service.
func expectAllowed(service, method, caller string) bool {
	in := func(set ...string) bool { return slices.Contains(set, caller) }
	isHealth, isReflection := slices.Contains(health, method), slices.Contains(reflection, method)
	switch {
	case isHealth && caller == "admin", isReflection && caller == "admin":
		return true // the operator may check health and reflect everywhere
	case method == "/grpc.health.v1.Health/Check" && caller == service:
		return true // a workload checks its own health (the container health check)
	case isHealth || isReflection:
		switch service {
		case shop.Gateway:
			return in(users...) // people use grpcurl against the gateway
		case shop.Orders:
			return isHealth && in("gateway") // each workload checks the services it calls
		case shop.Inventory:
			return isHealth && in("gateway", "orders")
		case shop.Payments:
			return isHealth && in("orders")
		}
	}
	switch {
	case strings.HasPrefix(method, "/shop.gateway.v1."):
		return in(users...) // mallory's PlaceOrder deny is dry-run: it proceeds
	case strings.HasPrefix(method, "/shop.gateway.v2."):
		return in("alice") // v2 is for some users only
	case strings.HasPrefix(method, "/shop.orders.v1."):
		return in("gateway")
	case method == "/shop.inventory.v1.InventoryService/ListProducts":
		return in("gateway", "orders")
	case method == "/shop.inventory.v1.InventoryService/Reserve", method == "/shop.inventory.v1.InventoryService/Release":
		return in("orders")
	case method == "/shop.inventory.v1.InventoryService/Restock", method == "/shop.payments.v1.PaymentService/Refund":
		return in("admin")
	case method == "/shop.payments.v1.PaymentService/Charge":
		return in("orders")
	}
	panic("expectAllowed: no expectation for " + method)
}

// expectSubject reports whether a call that expectAllowed allows also needs
// a verified subject, a person's transaction token minted by the gateway:
// the gateway calls orders on behalf of people only (orders' protos).
func expectSubject(service, method, caller string) bool {
	return service == shop.Orders && strings.HasPrefix(method, "/shop.orders.v1.") && caller == "gateway"
}

// expectToken reports whether a call that expectAllowed allows also needs
// a certificate-bound access token: alice's v2 orders (rule
// alice-places-v2-orders-with-token).
func expectToken(service, method, caller string) bool {
	return service == shop.Gateway && method == "/shop.gateway.v2.StorefrontService/PlaceOrder" && caller == "alice"
}

// TestDecisionMatrix calls every method of every service as every caller,
// with a grpc-go client and a connect-go client, over real mTLS, and checks
// each outcome against the table: once without a transaction token, once
// with one the gateway's key minted for alice, which only the calls that
// need a subject need (and which the gateway, the edge, ignores: it mints
// its own).
func TestDecisionMatrix(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	ca, err := certs.LoadCA(m.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.LoadBundle(filepath.Join(m.CertDir, "bundle.pem"), shop.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range matrixCallers {
		if _, err := filepath.Glob(filepath.Join(m.CertDir, name+".pem")); err == nil && slices.Contains([]string{"bob", "mallory"}, name) {
			svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(id)})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := certs.WriteSVID(m.CertDir, name, svid); err != nil {
				t.Fatal(err)
			}
		}
	}

	aliceTxn := mintTxn(t, m.CertDir, "gateway", "spiffe://shop.example/user/alice")

	type call func(ctx context.Context, method string) error
	clients := map[string]map[string]map[string]call{} // caller -> service -> client kind
	for caller := range matrixCallers {
		svid, err := x509svid.Load(filepath.Join(m.CertDir, caller+".pem"), filepath.Join(m.CertDir, caller+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		creds := mesh.Credentials{SVID: svid, Bundles: bundle}
		connectOpts, err := mesh.ConnectClientOptions(creds) // forward the token in ctx, like the mesh's clients
		if err != nil {
			t.Fatal(err)
		}
		clients[caller] = map[string]map[string]call{}
		for _, service := range shop.Services {
			conn, err := mesh.DialGRPC(m.Addrs[service], creds, shop.WorkloadID(service))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			hc, err := mesh.NewHTTPClient(creds, shop.WorkloadID(service))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(hc.CloseIdleConnections)
			base := "https://" + m.Addrs[service]
			clients[caller][service] = map[string]call{
				"grpc-go": func(ctx context.Context, method string) error { return grpcCall(ctx, conn, method) },
				"connect-go": func(ctx context.Context, method string) error {
					return connectCall(ctx, hc, base, method, connectOpts...)
				},
			}
		}
	}

	checked := 0
	for _, withTxn := range []bool{false, true} {
		for _, service := range shop.Services {
			for _, method := range matrixMethods[service] {
				for caller, id := range matrixCallers {
					for kind, c := range clients[caller][service] {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						name := fmt.Sprintf("%s: %s -> %s %s (transaction token: %v)", kind, caller, service, method, withTxn)
						if withTxn {
							ctx = txn.NewContext(ctx, aliceTxn)
						}
						err := c(ctx, method)
						cancel()
						want := expectAllowed(service, method, caller)
						code := codeOf(err)
						checked++
						switch {
						case want && expectToken(service, method, caller):
							// Allowed only with an access token; this call has none.
							if code != codes.Unauthenticated || !strings.Contains(err.Error(), "token required for "+method) {
								t.Errorf("%s: %v (%v), want Unauthenticated: token required", name, code, err)
							}
						case want && expectSubject(service, method, caller) && !withTxn:
							// The gateway's own certificate, but no person's token.
							if code != codes.Unauthenticated || !strings.Contains(err.Error(), "transaction token required for "+method) {
								t.Errorf("%s: %v (%v), want Unauthenticated: transaction token required", name, code, err)
							}
						case want && (code == codes.PermissionDenied || code == codes.Unauthenticated):
							t.Errorf("%s: refused (%v), want allowed", name, err)
						case !want && code != codes.PermissionDenied:
							t.Errorf("%s: code %v (%v), want PermissionDenied", name, code, err)
						case !want && !strings.Contains(err.Error(), fmt.Sprintf("%s may not call %s", id, method)):
							t.Errorf("%s: message %q does not name the caller and method", name, err)
						}
					}
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("checked only %d (caller, method, client) cases", checked)
	}
}

// grpcCall calls method with an empty request on a bidirectional stream, so
// one helper serves unary and streaming methods alike, and returns the
// status of the first response.
func grpcCall(ctx context.Context, conn *grpc.ClientConn, method string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends Watch streams after their first message
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = stream.CloseSend()
	return stream.RecvMsg(&emptypb.Empty{})
}

// connectCall does the same with connect-go over the gRPC protocol, with
// opts.
func connectCall(ctx context.Context, hc *http.Client, base, method string, opts ...connect.ClientOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, base+method, append(opts, connect.WithGRPC())...)
	stream, err := c.CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{}))
	if err != nil {
		return err
	}
	defer stream.Close()
	if stream.Receive() {
		return nil
	}
	return stream.Err()
}

// TestGrpcurlAuthorization samples the matrix with the real grpcurl, as a
// person would: alice may not call payments directly, v2 of the storefront
// is for alice and not bob.
func TestGrpcurlAuthorization(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	ca, err := certs.LoadCA(m.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/user/bob")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certs.WriteSVID(m.CertDir, "bob", svid); err != nil {
		t.Fatal(err)
	}
	as := func(name string) []string {
		return []string{"-cacert", filepath.Join(m.CertDir, "bundle.pem"),
			"-cert", filepath.Join(m.CertDir, name+".pem"), "-key", filepath.Join(m.CertDir, name+"-key.pem")}
	}
	// Only the gateway offers people reflection: elsewhere grpcurl reads
	// the protos from the source tree.
	protos := []string{"-import-path", filepath.Join(testtool.RepoRoot(t), "proto"), "-proto", "shop/payments/v1/payments.proto"}
	payments := "localhost:" + port(m.Addrs[shop.Payments])
	gateway := gatewayTarget(m)

	testCases := []struct {
		name string
		args []string
		want string // in grpcurl's output
		ok   bool
	}{
		{"alice-charges-payments-directly", slices.Concat(as("alice"), protos, []string{"-d", `{"order_id":"ord_1","amount":{"currency_code":"EUR","units_minor":100}}`, payments, "shop.payments.v1.PaymentService/Charge"}),
			"Message: spiffe://shop.example/user/alice may not call /shop.payments.v1.PaymentService/Charge", false},
		{"alice-reflects-on-payments", slices.Concat(as("alice"), []string{payments, "list"}),
			"PermissionDenied", false},
		{"alice-uses-v2", slices.Concat(as("alice"), []string{gateway, "shop.gateway.v2.StorefrontService/ListProducts"}),
			`"products"`, true},
		{"bob-uses-v2", slices.Concat(as("bob"), []string{"-d", `{}`, gateway, "shop.gateway.v2.StorefrontService/ListProducts"}),
			"Message: spiffe://shop.example/user/bob may not call /shop.gateway.v2.StorefrontService/ListProducts", false},
		{"bob-uses-v1", slices.Concat(as("bob"), []string{gateway, "shop.gateway.v1.StorefrontService/ListProducts"}),
			`"products"`, true},
		{"admin-restocks-inventory", slices.Concat(as("admin"), []string{"-d", `{"product_id":"sku-fig","quantity":5}`,
			"localhost:" + port(m.Addrs[shop.Inventory]), "shop.inventory.v1.InventoryService/Restock"}), "sku-fig", true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := grpcurl(t, nil, tc.args...)
			if (err == nil) != tc.ok {
				t.Errorf("grpcurl err = %v, want ok=%v\n%s", err, tc.ok, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("grpcurl output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
