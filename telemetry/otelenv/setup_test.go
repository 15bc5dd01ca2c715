package otelenv_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/telemetry/internal/oteltest"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

// These tests set environment variables, so none of them runs in parallel.

func TestSetupFromEnvironment(t *testing.T) {
	testCases := []struct {
		name        string
		env         map[string]string
		wantService string
		wantSpans   int
	}{
		{"defaults", nil, "orders", 1},
		{"service-name-from-env", map[string]string{"OTEL_SERVICE_NAME": "billing"}, "billing", 1},
		{"resource-attributes-from-env", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=ledger,deployment.environment=dev"}, "ledger", 1},
		// The SDK reads OTEL_TRACES_SAMPLER itself.
		{"sampler-always-off", map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, "orders", 0},
		{"sampler-ratio-zero", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, "orders", 0},
		{"sampler-parentbased-ratio-one", map[string]string{"OTEL_TRACES_SAMPLER": "ParentBased_TraceIDRatio", "OTEL_TRACES_SAMPLER_ARG": "1"}, "orders", 1},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			oteltest.ClearOTelEnv(t)
			t.Setenv("OTEL_TRACES_EXPORTER", "none")
			t.Setenv("OTEL_METRICS_EXPORTER", "none")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			rec := tracetest.NewSpanRecorder()
			p, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.WithSpanProcessor(rec), otelenv.WithoutGlobal())
			if err != nil {
				t.Fatal(err)
			}
			if p.TraceExporter != "none" {
				t.Errorf("TraceExporter = %q, want none", p.TraceExporter)
			}
			_, span := p.TracerProvider.Tracer("test").Start(context.Background(), "op")
			span.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
			if got := len(rec.Ended()); got != tc.wantSpans {
				t.Fatalf("recorded %d spans, want %d", got, tc.wantSpans)
			}
			res := p.Resource.Set()
			if v, _ := res.Value(semconv.ServiceNameKey); v.AsString() != tc.wantService {
				t.Errorf("service.name = %q, want %q", v.AsString(), tc.wantService)
			}
			if v, _ := res.Value(semconv.ServiceVersionKey); v.AsString() != "1.2.3" {
				t.Errorf("service.version = %q, want 1.2.3", v.AsString())
			}
			if tc.wantSpans > 0 && !rec.Ended()[0].Resource().Equal(p.Resource) {
				t.Errorf("span resource = %v, want Providers.Resource %v", rec.Ended()[0].Resource(), p.Resource)
			}
		})
	}
}

func TestSetupErrors(t *testing.T) {
	testCases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown-sampler", map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"},
			`otelenv: OTEL_TRACES_SAMPLER="sometimes": want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio`},
		{"ratio-too-big", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			`otelenv: OTEL_TRACES_SAMPLER_ARG="1.5": want a ratio from 0 to 1`},
		{"ratio-not-a-number", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "NaN"},
			`otelenv: OTEL_TRACES_SAMPLER_ARG="NaN": want a ratio from 0 to 1`},
		{"unknown-traces-exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"},
			`otelenv: OTEL_TRACES_EXPORTER="zipkin": unknown exporter`},
		{"unknown-protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
			`otelenv: OTEL_TRACES_EXPORTER="otlp": OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon": want grpc or http/protobuf`},
		{"unknown-traces-protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
			`otelenv: OTEL_TRACES_EXPORTER="": OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/json": want grpc or http/protobuf`},
		{"unknown-metrics-exporter", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "statsd"},
			`otelenv: OTEL_METRICS_EXPORTER="statsd": unknown exporter`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			oteltest.ClearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.WithoutGlobal())
			if err == nil {
				_ = p.Shutdown(context.Background())
				t.Fatalf("Setup succeeded, want error %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Setup error:\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestSetupGlobals(t *testing.T) {
	oteltest.ClearOTelEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	tp, mp, prop := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(prop)
	})

	p, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.WithoutGlobal())
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() == trace.TracerProvider(p.TracerProvider) {
		t.Error("WithoutGlobal: the global tracer provider was replaced")
	}
	_ = p.Shutdown(context.Background())

	p, err = otelenv.Setup(context.Background(), "orders", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if otel.GetTracerProvider() != trace.TracerProvider(p.TracerProvider) {
		t.Error("the global tracer provider is not Providers.TracerProvider")
	}
	if otel.GetMeterProvider() != p.MeterProvider {
		t.Error("the global meter provider is not Providers.MeterProvider")
	}
	got := otel.GetTextMapPropagator().Fields()
	slices.Sort(got)
	if strings.Join(got, ",") != "baggage,traceparent,tracestate" {
		t.Errorf("global propagator fields = %v, want traceparent, tracestate, baggage", got)
	}
}

func TestDefaultToConsoleTree(t *testing.T) {
	testCases := []struct {
		name         string
		env          map[string]string
		wantExporter string
		wantTree     bool
	}{
		{"nothing-set", nil, otelenv.ExporterTree, true},
		{"otlp-endpoint-set", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_METRICS_EXPORTER": "none"}, "otlp", false},
		{"otlp-traces-endpoint-set", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, "otlp", false},
		{"exporter-none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, "none", false},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			oteltest.ClearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out testsync.Buffer
			tree := tracetree.NewPrinter(&out)
			// Two services share the printer, as in `shop up`.
			gw, err := otelenv.Setup(context.Background(), "gateway", "1.2.3", otelenv.DefaultToConsoleTree(tree), otelenv.WithoutGlobal())
			if err != nil {
				t.Fatal(err)
			}
			ord, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.DefaultToConsoleTree(tree), otelenv.WithoutGlobal())
			if err != nil {
				t.Fatal(err)
			}
			if gw.TraceExporter != tc.wantExporter {
				t.Errorf("TraceExporter = %q, want %q", gw.TraceExporter, tc.wantExporter)
			}
			if gw.TraceExporter == "otlp" {
				// No collector listens: exporting would only log errors.
				_ = ord.Shutdown(context.Background())
				_ = gw.Shutdown(context.Background())
				return
			}
			ctx, root := gw.TracerProvider.Tracer("test").Start(context.Background(), "shop.gateway.v1.StorefrontService/PlaceOrder",
				trace.WithSpanKind(trace.SpanKindServer))
			_, child := ord.TracerProvider.Tracer("test").Start(ctx, "shop.orders.v1.OrderService/CreateOrder",
				trace.WithSpanKind(trace.SpanKindServer))
			child.End()
			root.End()
			// Shutting one Providers down flushes the printer but leaves it
			// working for the other.
			if err := ord.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.wantTree {
				oteltest.WaitFor(t, "the tree", func() bool { return strings.Contains(out.String(), "└─ orders") })
				_, late := gw.TracerProvider.Tracer("test").Start(context.Background(), "after-orders-shut-down")
				late.End()
			}
			if err := gw.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := tree.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if tc.wantTree {
				if !strings.Contains(got, "└─ orders  server  shop.orders.v1.OrderService/CreateOrder") ||
					!strings.Contains(got, "after-orders-shut-down") {
					t.Errorf("printed:\n%s\nwant both traces", got)
				}
			} else if got != "" {
				t.Errorf("printed a tree although OTLP/none was chosen:\n%s", got)
			}
		})
	}
}

// TestOff: Providers.Off reports a set-up that exports nothing, so that a
// program installs no instrumentation (before, OTEL_TRACES_EXPORTER=none
// OTEL_METRICS_EXPORTER=none still had every call traced, with spans
// recorded and dropped, and nothing said so).
func TestOff(t *testing.T) {
	const nowhere = "http://127.0.0.1:1" // no collector: what is exported fails fast
	testCases := []struct {
		name    string
		env     map[string]string
		opts    []otelenv.Option
		wantOff bool
	}{
		{"exporters-none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, nil, true},
		{"sampler-always-off", map[string]string{"OTEL_TRACES_SAMPLER": "always_off", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_METRICS_EXPORTER": "none"}, nil, true},
		{"sampler-ratio-zero", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_METRICS_EXPORTER": "none"}, nil, true},
		{"sampler-always-off-with-processor", map[string]string{"OTEL_TRACES_SAMPLER": "always_off", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
			[]otelenv.Option{otelenv.WithSpanProcessor(tracetest.NewSpanRecorder())}, true},
		{"tree-default-traces-none", map[string]string{"OTEL_TRACES_EXPORTER": "none"},
			[]otelenv.Option{otelenv.DefaultToConsoleTree(tracetree.NewPrinter(&testsync.Buffer{}))}, true},
		// Spans or metrics go somewhere: on.
		{"exporters-none-with-processor", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
			[]otelenv.Option{otelenv.WithSpanProcessor(tracetest.NewSpanRecorder())}, false},
		{"metrics-exported", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere}, nil, false},
		{"sampler-parentbased-always-off", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_METRICS_EXPORTER": "none"}, nil, false},
		{"sampler-ratio", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_METRICS_EXPORTER": "none"}, nil, false},
		{"defaults", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere}, nil, false},
		{"tree-default", nil, []otelenv.Option{otelenv.DefaultToConsoleTree(tracetree.NewPrinter(&testsync.Buffer{}))}, false},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			oteltest.ClearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p, err := otelenv.Setup(context.Background(), "orders", "1.2.3", append(tc.opts, otelenv.WithoutGlobal())...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Shutdown(context.Background()) }()
			if got := p.Off(); got != tc.wantOff {
				t.Errorf("Off() = %v, want %v", got, tc.wantOff)
			}
		})
	}
}
