package shop_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// startTracedMesh runs the sample mesh with telemetry from setup.
func startTracedMesh(t *testing.T, setup func(name string) (*otelenv.Providers, error)) *shop.Mesh {
	t.Helper()
	return startMesh(t, func(c *shop.Config) { c.StepInterval, c.Telemetry = time.Hour, setup })
}

// placeOrderAs places one order through the gateway with a grpc-go client.
func placeOrderAs(t *testing.T, m *shop.Mesh, who string) {
	t.Helper()
	conn := dialAs(t, m, who, shop.Gateway)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := gatewayv1.NewStorefrontServiceClient(conn).PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: who,
		Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}})
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
}

func dialAs(t *testing.T, m *shop.Mesh, who, service string) *grpc.ClientConn {
	t.Helper()
	creds, err := shop.LoadCredentials(m.CertDir, who)
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

// TestOneTraceAcrossTheMesh records spans in process and checks that one
// PlaceOrder is one trace over four services, correctly parented, with the
// identity, the decision, the caller chain and the transaction (subject
// and id) on every server span; and
// that a denied call's span says deny and names the rule.
func TestOneTraceAcrossTheMesh(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	rec := tracetest.NewSpanRecorder()
	m := startTracedMesh(t, func(name string) (*otelenv.Providers, error) {
		return otelenv.Setup(context.Background(), name, "test", otelenv.WithoutGlobal(), otelenv.WithSpanProcessor(rec))
	})
	placeOrderAs(t, m, "alice")

	// The seven spans of a PlaceOrder end within moments of the reply.
	var spans []sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for len(spans) < 7 && time.Now().Before(deadline) {
		spans = rec.Ended()
		time.Sleep(10 * time.Millisecond) // polling the recorder, bounded by the deadline
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	traces := map[string]bool{}
	for _, s := range spans {
		traces[s.SpanContext().TraceID().String()] = true
		byName[serviceOf(s)+" "+s.SpanKind().String()+" "+s.Name()] = s
	}
	if len(spans) != 7 || len(traces) != 1 {
		t.Fatalf("got %d spans in %d traces, want 7 in 1: %v", len(spans), len(traces), keys(byName))
	}
	parentOf := map[string]string{
		"gateway client shop.orders.v1.OrderService/CreateOrder":      "gateway server shop.gateway.v1.StorefrontService/PlaceOrder",
		"orders server shop.orders.v1.OrderService/CreateOrder":       "gateway client shop.orders.v1.OrderService/CreateOrder",
		"orders client shop.inventory.v1.InventoryService/Reserve":    "orders server shop.orders.v1.OrderService/CreateOrder",
		"inventory server shop.inventory.v1.InventoryService/Reserve": "orders client shop.inventory.v1.InventoryService/Reserve",
		"orders client shop.payments.v1.PaymentService/Charge":        "orders server shop.orders.v1.OrderService/CreateOrder",
		"payments server shop.payments.v1.PaymentService/Charge":      "orders client shop.payments.v1.PaymentService/Charge",
	}
	for child, parent := range parentOf {
		c, p := byName[child], byName[parent]
		if c == nil || p == nil {
			t.Fatalf("missing span %q or %q in %v", child, parent, keys(byName))
		}
		if c.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("%q is not a child of %q", child, parent)
		}
	}
	alice, gateway, orders := "spiffe://shop.example/user/alice", "spiffe://shop.example/ns/shop/sa/gateway", "spiffe://shop.example/ns/shop/sa/orders"
	servers := []struct {
		span, peer, rule string
		chain            []string
	}{
		{"gateway server shop.gateway.v1.StorefrontService/PlaceOrder", alice, "users-call-storefront-v1", []string{alice}},
		{"orders server shop.orders.v1.OrderService/CreateOrder", gateway, "proto:shop.orders.v1.OrderService.CreateOrder", []string{alice, gateway}},
		{"inventory server shop.inventory.v1.InventoryService/Reserve", orders, "proto:shop.inventory.v1.InventoryService.Reserve", []string{alice, gateway, orders}},
		{"payments server shop.payments.v1.PaymentService/Charge", orders, "proto:shop.payments.v1.PaymentService.Charge", []string{alice, gateway, orders}},
	}
	txnIDs := map[string]bool{}
	for _, want := range servers {
		attrs := attrsOf(byName[want.span])
		if got := attrs[telemetry.PeerSPIFFEIDKey].AsString(); got != want.peer {
			t.Errorf("%s: peer = %q, want %q", want.span, got, want.peer)
		}
		if got := attrs[telemetry.AuthzDecisionKey].AsString(); got != "allow" {
			t.Errorf("%s: decision = %q, want allow", want.span, got)
		}
		if got := attrs[telemetry.AuthzRuleKey].AsString(); got != want.rule {
			t.Errorf("%s: rule = %q, want %q", want.span, got, want.rule)
		}
		if got := attrs[telemetry.CallerChainKey].AsStringSlice(); !slices.Equal(got, want.chain) {
			t.Errorf("%s: chain = %q, want %q", want.span, got, want.chain)
		}
		// The transaction the gateway minted a token for: alice's, one id
		// on every hop, each of which verified the token again.
		if got := attrs[telemetry.TxnSubjectKey].AsString(); got != alice {
			t.Errorf("%s: transaction subject = %q, want %q", want.span, got, alice)
		}
		txnIDs[attrs[telemetry.TxnIDKey].AsString()] = true
	}
	if len(txnIDs) != 1 || txnIDs[""] {
		t.Errorf("transaction ids on the server spans: %v, want one", txnIDs)
	}

	// Health checks make no spans (no noise): check every service as admin.
	for _, svc := range shop.Services {
		hc := healthpb.NewHealthClient(dialAs(t, m, "admin", svc))
		if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health %s: %v", svc, err)
		}
	}

	// A denied call: alice calls payments directly.
	rec2len := len(rec.Ended())
	conn := dialAs(t, m, "alice", shop.Payments)
	err := conn.Invoke(context.Background(), "/shop.payments.v1.PaymentService/Charge", &gatewayv1.GetOrderRequest{}, &gatewayv1.GetOrderResponse{})
	if codeOf(err).String() != "PermissionDenied" {
		t.Fatalf("alice -> payments.Charge: %v, want PermissionDenied", err)
	}
	var denied sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); denied == nil && time.Now().Before(deadline); {
		for _, s := range rec.Ended()[rec2len:] {
			if serviceOf(s) == "payments" && s.Name() == "shop.payments.v1.PaymentService/Charge" {
				denied = s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if denied == nil {
		t.Fatal("no server span for the denied call")
	}
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "grpc.health.v1.Health/") {
			t.Errorf("health check made a span: %s %s", serviceOf(s), s.Name())
		}
	}
	attrs := attrsOf(denied)
	if attrs[telemetry.AuthzDecisionKey].AsString() != "deny" || attrs[telemetry.AuthzRuleKey].AsString() != "default-deny" ||
		attrs[telemetry.PeerSPIFFEIDKey].AsString() != alice {
		t.Errorf("denied span attributes = %v", attrs)
	}
	if ev := denied.Events(); len(ev) != 1 || ev[0].Name != telemetry.DeniedEvent {
		t.Errorf("denied span events = %v, want one %s", ev, telemetry.DeniedEvent)
	}
}

func serviceOf(s sdktrace.ReadOnlySpan) string {
	v, _ := s.Resource().Set().Value(semconv.ServiceNameKey)
	return v.AsString()
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// collector is an OTLP/gRPC trace receiver built on the official collector
// service: what a real collector sees, the test sees.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]map[string]string // "service span-name" -> attributes
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range s.GetAttributes() {
					attrs[kv.GetKey()] = fmt.Sprint(kv.GetValue().GetValue())
				}
				c.spans[service+" "+s.GetKind().String()+" "+s.GetName()] = attrs
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) get(key string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.spans[key]
	return a, ok
}

// TestOTLPExport runs the mesh with the real OTLP/gRPC exporter, configured
// only through the standard environment, pointed at a receiver on loopback.
func TestOTLPExport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{spans: map[string]map[string]string{}}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	m := startTracedMesh(t, func(name string) (*otelenv.Providers, error) {
		return otelenv.Setup(context.Background(), name, "test", otelenv.WithoutGlobal())
	})
	placeOrderAs(t, m, "alice")

	want := map[string]string{
		"gateway SPAN_KIND_SERVER shop.gateway.v1.StorefrontService/PlaceOrder": "spiffe://shop.example/user/alice",
		"orders SPAN_KIND_SERVER shop.orders.v1.OrderService/CreateOrder":       "spiffe://shop.example/ns/shop/sa/gateway",
		"inventory SPAN_KIND_SERVER shop.inventory.v1.InventoryService/Reserve": "spiffe://shop.example/ns/shop/sa/orders",
		"payments SPAN_KIND_SERVER shop.payments.v1.PaymentService/Charge":      "spiffe://shop.example/ns/shop/sa/orders",
	}
	deadline := time.Now().Add(15 * time.Second)
	for key, peer := range want {
		var attrs map[string]string
		for ok := false; !ok; {
			if attrs, ok = col.get(key); !ok {
				if time.Now().After(deadline) {
					t.Fatalf("the collector never received %q", key)
				}
				time.Sleep(20 * time.Millisecond) // waiting for the batch exporter, bounded
			}
		}
		if !stringsContain(attrs[string(telemetry.PeerSPIFFEIDKey)], peer) || !stringsContain(attrs[string(telemetry.AuthzDecisionKey)], "allow") {
			t.Errorf("%s: attributes %v lack peer %s and decision allow", key, attrs, peer)
		}
	}
}

func stringsContain(s, sub string) bool { return sub != "" && strings.Contains(s, sub) }
