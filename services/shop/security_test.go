package shop_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// logSink is a goroutine-safe buffer for the mesh's logs.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// startLoggedMesh runs the sample mesh with pki's CA (so the test can sign
// defective certificates the mesh's bundle trusts) and every service's log
// in the returned sink. Orders move one status every step.
func startLoggedMesh(t *testing.T, pki *testpki.PKI, step time.Duration) (*shop.Mesh, *logSink) {
	t.Helper()
	logs := &logSink{}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := shop.Start(ctx, shop.Config{CertDir: pki.WriteDir(t, sample.DevIdentities(pki.TrustDomain())), Addrs: addrs, StepInterval: step,
		PolicyFile: filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml"),
		Log:        slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := m.Wait(); err != nil {
			t.Errorf("mesh stopped with: %v", err)
		}
	})
	return m, logs
}

// writePair writes cert and key as NAME.pem and NAME-key.pem in dir and
// returns grpcurl's flags for them.
func writePair(t *testing.T, dir, name string, key crypto.Signer, chain ...*x509.Certificate) []string {
	t.Helper()
	var certPEM []byte
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-cert", certFile, "-key", keyFile}
}

// gatewayWarnings returns the gateway's warnings logged after offset.
func gatewayWarnings(logs *logSink, offset int) []string {
	var out []string
	for line := range strings.Lines(logs.String()[offset:]) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "service=gateway") {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return out
}

// TestSecurityMatrixThroughGrpcurl drives the real grpcurl at the gateway (a
// connect-go server) with every kind of bad client material. Each case
// checks what grpcurl prints and the one line the gateway logs; the cases
// run one after another so that each owns the log lines it asserts.
func TestSecurityMatrixThroughGrpcurl(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	m, logs := startLoggedMesh(t, pki, 50*time.Millisecond)
	target := gatewayTarget(m)
	bundle := []string{"-cacert", filepath.Join(m.CertDir, certs.BundleFile)}
	files := t.TempDir()

	leaf := func(name string, mutate func(*x509.Certificate)) []string {
		cert, key := pki.Leaf(t, mutate)
		return append(bundle, writePair(t, files, name, key, cert)...)
	}
	svidOf := func(p *testpki.PKI, name, id string) []string {
		s := p.SVID(t, id)
		return append(bundle, writePair(t, files, name, s.PrivateKey, s.Certificates...)...)
	}
	foreign := testpki.New(t, "shop.example")
	partner := testpki.New(t, "partner.example")
	if err := os.WriteFile(filepath.Join(files, "foreign-bundle.pem"),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.CA().Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := m.CertDir

	// grpcurl finishes its TLS 1.3 handshake before the gateway has
	// checked its certificate; it then reports the gateway's alert, or the
	// closed connection if it wrote first.
	refused := func(alert string) []string {
		return []string{"remote error: tls: " + alert, "broken pipe", "connection reset by peer"}
	}
	const (
		handshake = `msg="http: TLS handshake error from 127.0.0.1:`
		leafID    = `\"spiffe://shop.example/test/leaf\"`
		serial    = "identity: client certificate serial "
	)
	testCases := []struct {
		name  string
		flags []string
		args  []string // the grpcurl call after the target; default: list
		// succeeds is set on the control case; every other call fails.
		succeeds bool
		// out lists what grpcurl may print (any one of them).
		out []string
		// reason holds the parts of the gateway's warning line(s); nil:
		// the gateway logs no warning.
		reason []string
		// logged is how that line starts; default: a refused handshake.
		logged string
	}{
		{
			name:     "control-alice-lists-services",
			flags:    aliceFlags(dir),
			succeeds: true,
			out:      []string{"shop.gateway.v1.StorefrontService"},
		},
		{
			name:   "no-client-certificate",
			flags:  bundle,
			out:    refused("certificate required"),
			reason: []string{"tls: client didn't provide a certificate"},
		},
		{
			name:   "certificate-from-another-ca",
			flags:  svidOf(foreign, "foreign-alice", "spiffe://shop.example/user/alice"),
			out:    refused("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://shop.example/user/alice\": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`},
		},
		{
			name:   "expired",
			flags:  leaf("expired", testpki.Expired),
			out:    refused("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time ", " is after "},
		},
		{
			name:   "not-yet-valid",
			flags:  leaf("not-yet-valid", testpki.NotYetValid),
			out:    refused("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time ", " is before "},
		},
		{
			name:   "leaf-with-ca-flag",
			flags:  leaf("leaf-is-ca", testpki.LeafIsCA),
			out:    refused("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: leaf certificate with CA flag set to true"},
		},
		{
			name:   "ca-certificate-as-leaf",
			flags:  append(bundle, "-cert", filepath.Join(dir, certs.BundleFile), "-key", filepath.Join(dir, certs.CAKeyFile)),
			out:    refused("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://shop.example\": x509svid: leaf certificate with CA flag set to true`},
		},
		{
			name:   "no-uri-san",
			flags:  leaf("no-uri-san", testpki.NoURISAN),
			out:    refused("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN"},
		},
		{
			name:   "two-uri-sans",
			flags:  leaf("two-uri-sans", testpki.TwoURISANs),
			out:    refused("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN"},
		},
		{
			name:   "non-spiffe-uri",
			flags:  leaf("https-uri", testpki.HTTPSURI),
			out:    refused("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: scheme is missing or invalid"},
		},
		{
			name:   "malformed-id-uppercase-trust-domain",
			flags:  leaf("uppercase-trust-domain", testpki.UppercaseTrustDomain),
			out:    refused("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
		},
		{
			name:   "malformed-id-empty-path",
			flags:  leaf("no-path", testpki.NoPath),
			out:    refused("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://shop.example\": SPIFFE ID of an X.509-SVID must have a path`},
		},
		{
			name:   "trust-domain-not-configured",
			flags:  svidOf(partner, "partner", "spiffe://partner.example/user/alice"),
			out:    refused("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://partner.example/user/alice\": x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain \"partner.example\"`},
		},
		{
			name:   "no-client-auth-usage",
			flags:  leaf("no-client-auth", testpki.NoClientAuth),
			out:    refused("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": leaf lacks the clientAuth extended key usage"},
		},
		{
			// grpcurl checks the pair itself and never dials (the mesh
			// matrix covers a client that does: mesh/security_test.go).
			name:  "key-does-not-match-certificate",
			flags: append(bundle, "-cert", filepath.Join(dir, "alice.pem"), "-key", filepath.Join(dir, "admin-key.pem")), // alice's certificate, the operator's key
			out:   []string{"Failed to create TLS config: could not load client key pair: tls: private key does not match public key"},
		},
		{
			name:   "plaintext-h2c",
			flags:  []string{"-plaintext"},
			out:    []string{`Failed to dial target host "` + target + `": EOF`, "connection reset by peer"},
			reason: []string{"tls: first record does not look like a TLS handshake"},
		},
		{
			// The client's view: grpcurl does not trust the gateway's CA.
			name:   "server-from-untrusted-ca",
			flags:  append([]string{"-cacert", filepath.Join(files, "foreign-bundle.pem")}, aliceFlags(dir)[2:]...),
			out:    []string{"tls: failed to verify certificate: x509: certificate signed by unknown authority"},
			reason: []string{"remote error: tls: bad certificate"},
		},
		{
			// A valid SVID the policy does not allow: past TLS, refused by
			// the gate, audited rather than logged as a handshake error.
			name:   "valid-svid-not-allowed-by-policy",
			flags:  leaf("good-leaf", nil),
			out:    []string{"spiffe://shop.example/test/leaf may not call /grpc.reflection.v1.ServerReflection/ServerReflectionInfo"},
			logged: `msg="authz decision"`,
			reason: []string{"caller=spiffe://shop.example/test/leaf", "method=/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "decision=deny", "rule=default-deny"},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			offset := len(logs.String())
			args := tc.args
			if args == nil {
				args = []string{"list"}
			}
			out, err := grpcurl(t, tc.flags, append([]string{target}, args...)...)
			if tc.succeeds != (err == nil) {
				t.Fatalf("grpcurl: err = %v, want success %v:\n%s", err, tc.succeeds, out)
			}
			if !containsAny(out, tc.out) {
				t.Errorf("grpcurl output does not say any of %q:\n%s", tc.out, out)
			}
			if tc.reason == nil {
				if w := gatewayWarnings(logs, offset); len(w) > 0 {
					t.Errorf("gateway warned:\n%s", strings.Join(w, "\n"))
				}
				return
			}
			prefix := handshake
			if tc.logged != "" {
				prefix = tc.logged
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(gatewayWarnings(logs, offset)) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			warnings := gatewayWarnings(logs, offset)
			if len(warnings) == 0 {
				t.Fatalf("the gateway logged no warning; want one saying %q", tc.reason)
			}
			for _, w := range warnings {
				ok := strings.Contains(w, prefix)
				for _, r := range tc.reason {
					ok = ok && strings.Contains(w, r)
				}
				if !ok {
					t.Errorf("gateway log line\n  %s\ndoes not contain %q and %q", w, prefix, tc.reason)
				}
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestRefusedCallsAtGateway covers calls from a valid user that the mesh
// refuses cleanly: an oversized message, an exceeded deadline (WatchOrder
// waits for the next status) and unknown methods, through grpcurl, a
// grpc-go client and a connect-go client.
func TestRefusedCallsAtGateway(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	m, logs := startLoggedMesh(t, pki, time.Hour) // orders stay CONFIRMED: WatchOrder waits
	target := gatewayTarget(m)
	alice := aliceFlags(m.CertDir)

	creds, err := shop.LoadCredentials(m.CertDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(m.Addrs[shop.Gateway], creds, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc, err := mesh.NewHTTPClient(creds, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	grpcStore := gatewayv1.NewStorefrontServiceClient(conn)
	connectStore := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+m.Addrs[shop.Gateway], connect.WithGRPC())

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	placed, err := grpcStore.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice",
		Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}})
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	orderID := placed.GetOrder().GetId()
	big := strings.Repeat("x", 5<<20) // over the 4 MiB default

	t.Run("deadline-exceeded", func(t *testing.T) {
		t.Run("grpc-go", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			stream, err := grpcStore.WatchOrder(ctx, &gatewayv1.WatchOrderRequest{OrderId: orderID})
			for err == nil {
				_, err = stream.Recv()
			}
			if code := codeOf(err); code != codes.DeadlineExceeded {
				t.Errorf("WatchOrder: %v (%v), want DeadlineExceeded", code, err)
			}
		})
		t.Run("connect-go", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			stream, err := connectStore.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: orderID}))
			if err == nil {
				for stream.Receive() {
				}
				err = stream.Err()
				_ = stream.Close()
			}
			if code := codeOf(err); code != codes.DeadlineExceeded {
				t.Errorf("WatchOrder: %v (%v), want DeadlineExceeded", code, err)
			}
		})
		t.Run("grpcurl", func(t *testing.T) {
			out, err := grpcurl(t, alice, "-max-time", "1", "-d", `{"order_id":"`+orderID+`"}`,
				target, "shop.gateway.v1.StorefrontService/WatchOrder")
			if err == nil || !strings.Contains(out, "Code: DeadlineExceeded") {
				t.Errorf("grpcurl WatchOrder -max-time 1: %v\n%s", err, out)
			}
			if !strings.Contains(out, "ORDER_STATUS_CONFIRMED") {
				t.Errorf("grpcurl WatchOrder did not stream the current status first:\n%s", out)
			}
		})
	})

	t.Run("oversized-message", func(t *testing.T) {
		const want = "message size 5242899 is larger than configured max 4194304"
		t.Run("grpc-go", func(t *testing.T) {
			_, err := grpcStore.PlaceOrder(t.Context(), &gatewayv1.PlaceOrderRequest{CustomerId: big,
				Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}})
			if codeOf(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), want) {
				t.Errorf("PlaceOrder(5 MiB): %v (%v), want ResourceExhausted %q", codeOf(err), err, want)
			}
		})
		t.Run("connect-go", func(t *testing.T) {
			_, err := connectStore.PlaceOrder(t.Context(), connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: big,
				Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}}))
			if codeOf(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), want) {
				t.Errorf("PlaceOrder(5 MiB): %v (%v), want ResourceExhausted %q", codeOf(err), err, want)
			}
		})
		t.Run("grpcurl", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, testtool.Path(t, "grpcurl"), append(alice, "-d", "@",
				target, "shop.gateway.v1.StorefrontService/PlaceOrder")...)
			cmd.Stdin = strings.NewReader(`{"customer_id":"` + big + `","items":[{"product_id":"sku-pear","quantity":1}]}`)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "Code: ResourceExhausted") || !strings.Contains(string(out), want) {
				t.Errorf("grpcurl PlaceOrder(5 MiB): %v\n%.2000s", err, out)
			}
		})
	})

	t.Run("unknown-method", func(t *testing.T) {
		// The gateway (connect-go): an unknown method of a service it
		// serves gets that service handler's 404, which gRPC clients read
		// as Unimplemented; a service it does not serve is authorized (and
		// audited) like any call: no rule lets alice call orders.
		err := conn.Invoke(t.Context(), "/shop.gateway.v1.StorefrontService/NoSuchMethod", &gatewayv1.GetOrderRequest{}, new(gatewayv1.GetOrderResponse))
		if code := codeOf(err); code != codes.Unimplemented || !strings.Contains(err.Error(), "404 (Not Found)") {
			t.Errorf("unknown method at the gateway: %v (%v), want Unimplemented (404)", code, err)
		}
		err = conn.Invoke(t.Context(), "/shop.orders.v1.OrderService/CreateOrder", &gatewayv1.GetOrderRequest{}, new(gatewayv1.GetOrderResponse))
		if want := "spiffe://shop.example/user/alice may not call /shop.orders.v1.OrderService/CreateOrder"; codeOf(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			t.Errorf("orders.CreateOrder at the gateway: %v, want PermissionDenied %q", err, want)
		}
		// grpcurl resolves methods by reflection first, so it refuses an
		// unknown one itself, without calling it.
		out, err := grpcurl(t, alice, target, "shop.gateway.v1.StorefrontService/NoSuchMethod")
		if err == nil || !strings.Contains(out, `service "shop.gateway.v1.StorefrontService" does not include a method named "NoSuchMethod"`) {
			t.Errorf("grpcurl unknown method: %v\n%s", err, out)
		}
		// orders (grpc-go) authorizes before it looks the method up: a
		// method alice may not call, existing or not, is PermissionDenied.
		orders := dialAlice(t, m, shop.Orders)
		for _, method := range []string{"/shop.orders.v1.OrderService/NoSuchMethod", "/shop.orders.v1.OrderService/CreateOrder"} {
			err := orders.Invoke(t.Context(), method, &gatewayv1.GetOrderRequest{}, new(gatewayv1.GetOrderResponse))
			want := "spiffe://shop.example/user/alice may not call " + method
			if code := codeOf(err); code != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
				t.Errorf("%s at orders: %v (%v), want PermissionDenied %q", method, code, err, want)
			}
		}
	})

	// Every refusal above was clean: the mesh still serves alice and never
	// logged an error.
	if _, err := grpcStore.GetOrder(t.Context(), &gatewayv1.GetOrderRequest{OrderId: orderID}); err != nil {
		t.Errorf("GetOrder after the refusals: %v", err)
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("the mesh logged an error: %s", line)
		}
	}
}

func dialAlice(t *testing.T, m *shop.Mesh, service string) *grpc.ClientConn {
	t.Helper()
	creds, err := shop.LoadCredentials(m.CertDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(m.Addrs[service], creds, shop.WorkloadID(service))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
