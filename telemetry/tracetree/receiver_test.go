package tracetree_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/telemetry/internal/oteltest"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

// startReceiver runs ServeReceiver on a loopback port until the test ends
// and returns its address and output.
func startReceiver(t *testing.T, opts ...tracetree.Option) (string, *testsync.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out testsync.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tracetree.ServeReceiver(ctx, ln, &out, opts...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeReceiver: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeReceiver did not return 10s after its context was cancelled")
		}
	})
	return ln.Addr().String(), &out
}

var durationSuffix = regexp.MustCompile(`  [0-9.]+(ns|µs|ms|s)$`)

// Over the wire, the way a collector sees it: two services export with the
// real OTLP exporters (chosen by autoexport from the environment) to the
// receiver, which prints one tree.
func TestReceiverOverOTLP(t *testing.T) {
	testCases := []struct {
		protocol, compression string
	}{
		{"grpc", ""},
		{"grpc", "gzip"},
		{"http/protobuf", ""},
		{"http/protobuf", "gzip"},
	}
	for _, tc := range testCases {
		t.Run(strings.ReplaceAll(tc.protocol, "/", "-")+"-"+tc.compression, func(t *testing.T) {
			oteltest.ClearOTelEnv(t)
			addr, out := startReceiver(t, tracetree.WithQuietPeriod(100*time.Millisecond))
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_METRICS_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", tc.compression)
			ctx := context.Background()
			gw, err := otelenv.Setup(ctx, "gateway", "1.2.3", otelenv.WithoutGlobal())
			if err != nil {
				t.Fatal(err)
			}
			ord, err := otelenv.Setup(ctx, "orders", "1.2.3", otelenv.WithoutGlobal())
			if err != nil {
				t.Fatal(err)
			}

			// gateway server -> gateway client -> (traceparent) -> orders server
			gwTracer, ordTracer := gw.TracerProvider.Tracer("test"), ord.TracerProvider.Tracer("test")
			ctx1, root := gwTracer.Start(ctx, "shop.gateway.v1.StorefrontService/PlaceOrder", trace.WithSpanKind(trace.SpanKindServer))
			telemetry.RecordDecision(root, user, telemetry.DecisionAllow, "users")
			ctx2, client := gwTracer.Start(ctx1, "shop.orders.v1.OrderService/CreateOrder", trace.WithSpanKind(trace.SpanKindClient))
			carrier := propagation.MapCarrier{}
			gw.Propagator.Inject(ctx2, carrier)
			_, server := ordTracer.Start(ord.Propagator.Extract(ctx, carrier), "shop.orders.v1.OrderService/CreateOrder", trace.WithSpanKind(trace.SpanKindServer))
			telemetry.RecordDecision(server, gateway, telemetry.DecisionDeny, "")
			server.SetAttributes(telemetry.TxnSubjectKey.String(user))
			server.SetStatus(codes.Error, "permission denied")
			_, health := ordTracer.Start(ctx, "grpc.health.v1.Health/Check", trace.WithSpanKind(trace.SpanKindServer))
			health.End()
			server.End()
			client.End()
			root.End()
			counter, err := ord.MeterProvider.Meter("test").Int64Counter("trustmesh.test")
			if err != nil {
				t.Fatal(err)
			}
			counter.Add(ctx, 1)

			// The children arrive first, then the root; the metrics too.
			for _, p := range []*otelenv.Providers{ord, gw} {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := p.Shutdown(sctx)
				cancel()
				if err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			}

			oteltest.WaitFor(t, "a tree", func() bool { return strings.HasSuffix(out.String(), "\n\n") })
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n\n"), "\n")
			for i := range lines {
				lines[i] = durationSuffix.ReplaceAllString(lines[i], "  DURATION")
			}
			want := []string{
				"trace " + root.SpanContext().TraceID().String(),
				"gateway       server  shop.gateway.v1.StorefrontService/PlaceOrder  caller=spiffe://shop.example/user/alice  decision=allow (users)  DURATION",
				"└─ gateway    client  shop.orders.v1.OrderService/CreateOrder       DURATION",
				`   └─ orders  server  shop.orders.v1.OrderService/CreateOrder       caller=spiffe://shop.example/ns/shop/sa/gateway  subject=spiffe://shop.example/user/alice  decision=deny  error="permission denied"  DURATION`,
			}
			if got, want := strings.Join(lines, "\n"), strings.Join(want, "\n"); got != want {
				t.Errorf("receiver printed:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestReceiverHTTPErrors(t *testing.T) {
	t.Parallel()
	addr, _ := startReceiver(t)
	testCases := []struct {
		name, method, path, contentType, encoding, body string
		want                                            int
	}{
		{"unknown-path", http.MethodPost, "/v1/logs", "application/x-protobuf", "", "", http.StatusNotFound},
		{"get", http.MethodGet, "/v1/traces", "", "", "", http.StatusMethodNotAllowed},
		{"json", http.MethodPost, "/v1/traces", "application/json", "", "{}", http.StatusUnsupportedMediaType},
		{"zstd", http.MethodPost, "/v1/traces", "application/x-protobuf", "zstd", "", http.StatusUnsupportedMediaType},
		{"bad-gzip", http.MethodPost, "/v1/traces", "application/x-protobuf", "gzip", "not gzip", http.StatusBadRequest},
		{"bad-protobuf", http.MethodPost, "/v1/traces", "application/x-protobuf", "", "\xff\xff", http.StatusBadRequest},
		{"empty-export", http.MethodPost, "/v1/metrics", "application/x-protobuf", "", "", http.StatusOK},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, "http://"+addr+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestServeReceiverListenerError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	err = tracetree.ServeReceiver(context.Background(), ln, &bytes.Buffer{})
	if !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "tracetree: receiver: ") {
		t.Errorf("ServeReceiver on a closed listener = %v, want a tracetree: receiver: error wrapping net.ErrClosed", err)
	}
}
