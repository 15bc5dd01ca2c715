package tracetree_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

var (
	t0      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	traceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
)

// stub builds a sampled span of traceID: span id, parent id (0 = root),
// service, kind, name, start and duration in ms after t0, attributes.
func stub(id, parent byte, service string, kind trace.SpanKind, name string, start, dur float64, attrs ...attribute.KeyValue) tracetest.SpanStub {
	s := tracetest.SpanStub{
		Name: name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: traceID, SpanID: trace.SpanID{7: id}, TraceFlags: trace.FlagsSampled,
		}),
		SpanKind:   kind,
		StartTime:  t0.Add(time.Duration(start * float64(time.Millisecond))),
		EndTime:    t0.Add(time.Duration((start + dur) * float64(time.Millisecond))),
		Attributes: attrs,
		Resource:   resource.NewSchemaless(semconv.ServiceName(service)),
	}
	if parent != 0 {
		s.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: traceID, SpanID: trace.SpanID{7: parent}, TraceFlags: trace.FlagsSampled, Remote: true,
		})
	}
	return s
}

const (
	user    = "spiffe://shop.example/user/alice"
	gateway = "spiffe://shop.example/ns/shop/sa/gateway"
	orders  = "spiffe://shop.example/ns/shop/sa/orders"
)

func decision(peer, d, rule string) []attribute.KeyValue {
	return []attribute.KeyValue{
		telemetry.PeerSPIFFEIDKey.String(peer), telemetry.AuthzDecisionKey.String(d), telemetry.AuthzRuleKey.String(rule),
	}
}

// placeOrder is the four-service trace of one PlaceOrder, in the order the
// spans end, with a health check mixed in.
func placeOrder() tracetest.SpanStubs {
	inv := stub(5, 4, "inventory", trace.SpanKindServer, "shop.inventory.v1.InventoryService/Reserve", 2, 1.5, decision(orders, "allow", "orders-reserve")...)
	pay := stub(7, 6, "payments", trace.SpanKindServer, "shop.payments.v1.PaymentService/Charge", 4.2, 2.25, decision(orders, "dry_run_deny", "")...)
	pay.Status = sdktrace.Status{Code: codes.Error, Description: "card declined"}
	return tracetest.SpanStubs{
		stub(9, 0, "orders", trace.SpanKindServer, "grpc.health.v1.Health/Check", 0, 0.1),
		inv,
		stub(4, 3, "orders", trace.SpanKindClient, "shop.inventory.v1.InventoryService/Reserve", 1.9, 1.8),
		pay,
		stub(6, 3, "orders", trace.SpanKindClient, "shop.payments.v1.PaymentService/Charge", 4, 2.5),
		stub(3, 2, "orders", trace.SpanKindServer, "shop.orders.v1.OrderService/CreateOrder", 1.5, 5.5, decision(gateway, "allow", "gateway-only")...),
		stub(2, 1, "gateway", trace.SpanKindClient, "shop.orders.v1.OrderService/CreateOrder", 1, 6.25),
		stub(1, 0, "gateway", trace.SpanKindServer, "shop.gateway.v1.StorefrontService/PlaceOrder", 0, 7.75, decision(user, "allow", "users")...),
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	got := tracetree.Format(placeOrder().Snapshots())
	want := `trace 4bf92f3577b34da6a3ce929d0e0e4736
gateway                server  shop.gateway.v1.StorefrontService/PlaceOrder  caller=spiffe://shop.example/user/alice  decision=allow (users)  7.75ms
└─ gateway             client  shop.orders.v1.OrderService/CreateOrder       6.25ms
   └─ orders           server  shop.orders.v1.OrderService/CreateOrder       caller=spiffe://shop.example/ns/shop/sa/gateway  decision=allow (gateway-only)  5.5ms
      ├─ orders        client  shop.inventory.v1.InventoryService/Reserve    1.8ms
      │  └─ inventory  server  shop.inventory.v1.InventoryService/Reserve    caller=spiffe://shop.example/ns/shop/sa/orders  decision=allow (orders-reserve)  1.5ms
      └─ orders        client  shop.payments.v1.PaymentService/Charge        2.5ms
         └─ payments   server  shop.payments.v1.PaymentService/Charge        caller=spiffe://shop.example/ns/shop/sa/orders  decision=dry_run_deny  error="card declined"  2.25ms
`
	if got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
}

// TestFormatShowsTheSubject: a server span that carries the verified
// subject of its transaction shows it after the caller (the direct peer);
// the subject is cleaned like every span-supplied string.
func TestFormatShowsTheSubject(t *testing.T) {
	t.Parallel()
	spans := tracetest.SpanStubs{
		stub(1, 0, "gateway", trace.SpanKindServer, "shop.gateway.v1.StorefrontService/PlaceOrder", 0, 3,
			append(decision(user, "allow", "users"), telemetry.TxnSubjectKey.String(user))...),
		stub(2, 1, "orders", trace.SpanKindServer, "shop.orders.v1.OrderService/CreateOrder", 1, 1,
			append(decision(gateway, "allow", "gateway-for-users"), telemetry.TxnSubjectKey.String(user), telemetry.TxnIDKey.String("4bf92f35"))...),
		stub(3, 1, "payments", trace.SpanKindServer, "shop.payments.v1.PaymentService/Charge", 2, 0.5,
			telemetry.PeerSPIFFEIDKey.String(orders), telemetry.TxnSubjectKey.String("spiffe://x\x1b[2J")),
	}
	want := `trace 4bf92f3577b34da6a3ce929d0e0e4736
gateway      server  shop.gateway.v1.StorefrontService/PlaceOrder  caller=spiffe://shop.example/user/alice  subject=spiffe://shop.example/user/alice  decision=allow (users)  3ms
├─ orders    server  shop.orders.v1.OrderService/CreateOrder       caller=spiffe://shop.example/ns/shop/sa/gateway  subject=spiffe://shop.example/user/alice  decision=allow (gateway-for-users)  1ms
└─ payments  server  shop.payments.v1.PaymentService/Charge        caller=spiffe://shop.example/ns/shop/sa/orders  subject=spiffe://x?[2J  500µs
`
	if got := tracetree.Format(spans.Snapshots()); got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatEdgeCases(t *testing.T) {
	t.Parallel()
	other := trace.TraceID{15: 1}
	orphan := stub(2, 1, "orders", trace.SpanKindServer, "a/B", 5, 1)
	orphan.SpanContext = orphan.SpanContext.WithTraceID(other)
	orphan.Parent = orphan.Parent.WithTraceID(other)
	evil := stub(3, 0, "evil\x1b[2J", trace.SpanKindInternal, "x\ny", 0, 0.0005)
	long := stub(4, 3, "", trace.SpanKindUnspecified, strings.Repeat("m", 130), 0, 2500)
	dup := stub(4, 3, "dup", trace.SpanKindClient, "dup", 1, 1)
	testCases := []struct {
		name  string
		spans tracetest.SpanStubs
		want  string
	}{
		{"empty", nil, ""},
		{"only-health", tracetest.SpanStubs{stub(1, 0, "orders", trace.SpanKindServer, "/grpc.health.v1.Health/Watch", 0, 1)}, ""},
		{
			"two-traces-in-start-order", tracetest.SpanStubs{orphan, stub(1, 0, "gateway", trace.SpanKindServer, "a/A", 0, 12.5)},
			"trace 4bf92f3577b34da6a3ce929d0e0e4736\n" +
				"gateway  server  a/A  12.5ms\n" +
				"\n" +
				"trace 00000000000000000000000000000001\n" +
				"orders  server  a/B  1ms\n",
		},
		{
			"control-characters-long-names-duplicates", tracetest.SpanStubs{evil, long, dup},
			"trace 4bf92f3577b34da6a3ce929d0e0e4736\n" +
				"evil?[2J  internal     x?y" + strings.Repeat(" ", 120) + "500ns\n" +
				"└─ ?      unspecified  " + strings.Repeat("m", 120) + "…  2.5s\n",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tracetree.Format(tc.spans.Snapshots()); got != tc.want {
				t.Errorf("Format:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func ExampleFormat() {
	id := trace.SpanContextConfig{TraceID: trace.TraceID{15: 0xab}, TraceFlags: trace.FlagsSampled}
	root, child := id, id
	root.SpanID, child.SpanID = trace.SpanID{7: 1}, trace.SpanID{7: 2}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spans := tracetest.SpanStubs{
		{
			Name: "shop.payments.v1.PaymentService/Charge", SpanKind: trace.SpanKindServer,
			SpanContext: trace.NewSpanContext(child), Parent: trace.NewSpanContext(root),
			StartTime: start.Add(time.Millisecond), EndTime: start.Add(3 * time.Millisecond),
			Resource: resource.NewSchemaless(semconv.ServiceName("payments")),
			Attributes: []attribute.KeyValue{
				telemetry.PeerSPIFFEIDKey.String("spiffe://shop.example/ns/shop/sa/orders"),
				telemetry.AuthzDecisionKey.String(telemetry.DecisionDeny),
				telemetry.AuthzRuleKey.String("orders-may-charge"),
			},
		},
		{
			Name: "shop.payments.v1.PaymentService/Charge", SpanKind: trace.SpanKindClient,
			SpanContext: trace.NewSpanContext(root),
			StartTime:   start, EndTime: start.Add(4 * time.Millisecond),
			Resource: resource.NewSchemaless(semconv.ServiceName("orders")),
		},
	}
	fmt.Print(tracetree.Format(spans.Snapshots()))
	// Output:
	// trace 000000000000000000000000000000ab
	// orders       client  shop.payments.v1.PaymentService/Charge  4ms
	// └─ payments  server  shop.payments.v1.PaymentService/Charge  caller=spiffe://shop.example/ns/shop/sa/orders  decision=deny (orders-may-charge)  2ms
}
