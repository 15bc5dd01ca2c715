package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
)

// outcomes are what the test greeters answer, by the name they are given:
// the code, and whether it is an error for the server's span (the
// conventions' server rule) — every non-OK code is one for the client's.
var outcomes = []struct {
	name        string
	code        codes.Code
	serverError bool
}{
	{"ok", codes.OK, false},
	{"missing", codes.NotFound, false},
	{"boom", codes.Internal, true},
}

func outcome(name string) (codes.Code, string) {
	for _, o := range outcomes {
		if o.name == name {
			return o.code, "answer " + name
		}
	}
	return codes.InvalidArgument, "unknown name"
}

type spanGRPCGreeter struct {
	greetv1.UnimplementedGreetServiceServer
}

func (spanGRPCGreeter) Greet(_ context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	if req.GetName() == "panic" {
		panic("greeter panics")
	}
	if c, msg := outcome(req.GetName()); c != codes.OK {
		return nil, status.Error(c, msg)
	}
	return &greetv1.GreetResponse{Greeting: "hi"}, nil
}

func (spanGRPCGreeter) Count(req *greetv1.CountRequest, ss greetv1.GreetService_CountServer) error {
	for i := range req.GetN() {
		if err := ss.Send(&greetv1.CountResponse{Number: i + 1}); err != nil {
			return err
		}
	}
	return nil
}

type spanConnectGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (spanConnectGreeter) Greet(_ context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	if req.Msg.GetName() == "panic" {
		panic("greeter panics")
	}
	if c, msg := outcome(req.Msg.GetName()); c != codes.OK {
		return nil, connect.NewError(connect.Code(c), errors.New(msg))
	}
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "hi"}), nil
}

func (spanConnectGreeter) Count(_ context.Context, req *connect.Request[greetv1.CountRequest], ss *connect.ServerStream[greetv1.CountResponse]) error {
	for i := range req.Msg.GetN() {
		if err := ss.Send(&greetv1.CountResponse{Number: i + 1}); err != nil {
			return err
		}
	}
	return nil
}

// spanPolicy lets the friend greet, count and check health.
func spanPolicy(t *testing.T, opts ...interceptors.AuthorizerOption) *interceptors.Authorizer {
	t.Helper()
	e, err := policy.Compile(policy.Merge(policy.Policy{Rules: []policy.Rule{
		{Name: "friend", Effect: policy.Allow, From: []string{friendID}, To: []string{"/greet.v1.GreetService/*"}},
	}}, mesh.AllowStandardMethods(friendID)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// recorded is telemetry that records: an SDK tracer provider with a span
// recorder, a meter provider with a manual reader, the W3C propagator and
// TrustRemote (a test of the edge rule clears it).
func recorded(t *testing.T) (mesh.Telemetry, *tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	return mesh.Telemetry{TracerProvider: tp, MeterProvider: mp, Propagator: telemetry.W3C(), TrustRemote: true}, spans, reader
}

// greetClient is what each stack's client does: greet with a name, count
// to n, check health.
type greetClient struct {
	greet  func(ctx context.Context, name string) error
	count  func(ctx context.Context, n int32) (int, error)
	health func(ctx context.Context) error
}

// instrumentedPair serves the test greeters on stack with telemetry tel and
// returns a client of it instrumented with the same telemetry. protocol is
// connect-go's client protocol ("grpc" or "connect").
func instrumentedPair(t *testing.T, stack, protocol string, tel mesh.Telemetry) greetClient {
	t.Helper()
	return instrumentedPairWith(t, stack, protocol, tel, spanPolicy(t))
}

// instrumentedPairWith is instrumentedPair with the server's authorizer.
func instrumentedPairWith(t *testing.T, stack, protocol string, tel mesh.Telemetry, authz *interceptors.Authorizer) greetClient {
	t.Helper()
	pki := testpki.New(t, "example.org")
	server := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	client := mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}
	sopts := mesh.WithServerOptions(mesh.WithAuthorizer(authz), mesh.WithTelemetry(tel))
	if stack == "grpc-go" {
		srv, err := mesh.NewGRPCServer(server, sopts)
		if err != nil {
			t.Fatal(err)
		}
		greetv1.RegisterGreetServiceServer(srv, spanGRPCGreeter{})
		conn, err := mesh.DialGRPC(serve(t, srv.Serve), client, spiffeid.RequireFromString(greeterID), mesh.WithClientTelemetry(tel))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		c := greetv1.NewGreetServiceClient(conn)
		return greetClient{
			greet: func(ctx context.Context, name string) error {
				_, err := c.Greet(ctx, &greetv1.GreetRequest{Name: name})
				return err
			},
			count: func(ctx context.Context, n int32) (int, error) {
				s, err := c.Count(ctx, &greetv1.CountRequest{N: n})
				if err != nil {
					return 0, err
				}
				got := 0
				for {
					if _, err := s.Recv(); err == io.EOF {
						return got, nil
					} else if err != nil {
						return got, err
					}
					got++
				}
			},
			health: func(ctx context.Context) error {
				_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			},
		}
	}
	srv, err := mesh.NewConnectServer(server, sopts)
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, spanConnectGreeter{}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	hc, err := mesh.NewHTTPClient(client, spiffeid.RequireFromString(greeterID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	copts, err := mesh.ConnectClientOptions(client, mesh.WithClientTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	if protocol == "grpc" {
		copts = append(copts, connect.WithGRPC())
	}
	c := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, copts...)
	hcheck := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, "https://"+addr+"/grpc.health.v1.Health/Check", copts...)
	return greetClient{
		greet: func(ctx context.Context, name string) error {
			_, err := c.Greet(ctx, connect.NewRequest(&greetv1.GreetRequest{Name: name}))
			return err
		},
		count: func(ctx context.Context, n int32) (int, error) {
			s, err := c.Count(ctx, connect.NewRequest(&greetv1.CountRequest{N: n}))
			if err != nil {
				return 0, err
			}
			defer s.Close()
			got := 0
			for s.Receive() {
				got++
			}
			return got, s.Err()
		},
		health: func(ctx context.Context) error {
			_, err := hcheck.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
			return err
		},
	}
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]string {
	m := make(map[attribute.Key]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// TestRPCSpansAndMetrics: on both stacks (and connect-go's two protocols),
// each call gets a client span and a server span in one trace (the server's
// the child of the client's), named package.Service/Method, with the RPC
// attributes of the semantic conventions, the conventions' span status per
// role, the mesh's own attributes on the server span, and the call in the
// rpc.server.call.duration and rpc.client.call.duration histograms by
// method and status code. Health checks make neither spans nor metrics.
func TestRPCSpansAndMetrics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ stack, protocol, system string }{
		{"grpc-go", "grpc", "grpc"},
		{"connect-go", "grpc", "grpc"},
		{"connect-go", "connect", "connectrpc"},
	} {
		t.Run(tc.stack+"/"+tc.protocol, func(t *testing.T) {
			t.Parallel()
			tel, spans, reader := recorded(t)
			c := instrumentedPair(t, tc.stack, tc.protocol, tel)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, o := range outcomes {
				if err := c.greet(ctx, o.name); status.Code(err) != o.code && connect.CodeOf(err) != connect.Code(o.code) {
					t.Fatalf("Greet(%q): %v, want %v", o.name, err, o.code)
				}
			}
			if n, err := c.count(ctx, 3); err != nil || n != 3 {
				t.Fatalf("Count(3): %d messages, %v", n, err)
			}
			if err := c.health(ctx); err != nil {
				t.Fatalf("health: %v", err)
			}

			ended := spans.Ended()
			if len(ended) != 2*(len(outcomes)+1) {
				t.Fatalf("%d spans, want %d (a client and a server span per call but the health check): %v", len(ended), 2*(len(outcomes)+1), spanNames(ended))
			}
			byKind := map[trace.SpanKind][]sdktrace.ReadOnlySpan{}
			for _, s := range ended {
				byKind[s.SpanKind()] = append(byKind[s.SpanKind()], s)
			}
			servers, clients := byKind[trace.SpanKindServer], byKind[trace.SpanKindClient]
			if len(servers) != len(clients) {
				t.Fatalf("%d server and %d client spans: %v", len(servers), len(clients), spanNames(ended))
			}
			for _, srv := range servers {
				cl := clients[slices.IndexFunc(clients, func(s sdktrace.ReadOnlySpan) bool {
					return s.SpanContext().SpanID() == srv.Parent().SpanID()
				})]
				if cl.SpanContext().TraceID() != srv.SpanContext().TraceID() {
					t.Fatalf("server span %s is not in its client's trace", srv.Name())
				}
				if cl.Name() != srv.Name() {
					t.Fatalf("client span %q, server span %q", cl.Name(), srv.Name())
				}
				sa, ca := attrs(srv.Attributes()), attrs(cl.Attributes())
				method := srv.Name()
				if !strings.HasPrefix(method, "greet.v1.GreetService/") {
					t.Fatalf("span name %q, want greet.v1.GreetService/METHOD", method)
				}
				for _, a := range []map[attribute.Key]string{sa, ca} {
					if a["rpc.system.name"] != tc.system || a["rpc.method"] != method {
						t.Fatalf("%s: rpc.system.name %q rpc.method %q, want %q %q", method, a["rpc.system.name"], a["rpc.method"], tc.system, method)
					}
				}
				if sa[attribute.Key(telemetry.PeerSPIFFEIDKey)] != friendID || sa[attribute.Key(telemetry.AuthzDecisionKey)] != telemetry.DecisionAllow {
					t.Fatalf("%s: server span misses the peer or decision: %v", method, sa)
				}
				code := sa["rpc.response.status_code"]
				if ca["rpc.response.status_code"] != code {
					t.Fatalf("%s: client saw %q, server %q", method, ca["rpc.response.status_code"], code)
				}
				serverErr, clientErr := srv.Status().Code == otelcodes.Error, cl.Status().Code == otelcodes.Error
				wantServerErr := code == "INTERNAL"
				if serverErr != wantServerErr || clientErr != (code != "OK") {
					t.Fatalf("%s %s: server span error %v, client span error %v", method, code, serverErr, clientErr)
				}
				if serverErr && (srv.Status().Description != "answer boom" || sa["error.type"] != code) {
					t.Fatalf("%s: server span status %+v, error.type %q", method, srv.Status(), sa["error.type"])
				}
			}
			if got := statusCodes(servers); got != "INTERNAL,NOT_FOUND,OK,OK" {
				t.Fatalf("server status codes %s, want INTERNAL,NOT_FOUND,OK,OK", got)
			}

			var rm metricdata.ResourceMetrics
			if err := reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"rpc.server.call.duration", "rpc.client.call.duration"} {
				got := histogramCounts(rm, name)
				// error.type per role: a server's errors are INTERNAL and
				// the like, a client's every code but OK.
				want := map[string]uint64{
					"greet.v1.GreetService/Greet OK": 1, "greet.v1.GreetService/Greet NOT_FOUND": 1,
					"greet.v1.GreetService/Greet INTERNAL error.type=INTERNAL": 1, "greet.v1.GreetService/Count OK": 1,
				}
				if name == "rpc.client.call.duration" {
					delete(want, "greet.v1.GreetService/Greet NOT_FOUND")
					want["greet.v1.GreetService/Greet NOT_FOUND error.type=NOT_FOUND"] = 1
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s: %v, want %v (no health check)", name, got, want)
				}
			}
		})
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanKind().String()+":"+s.Name())
	}
	return out
}

func statusCodes(spans []sdktrace.ReadOnlySpan) string {
	return strings.Join(sortedCodes(spans), ",")
}

func sortedCodes(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, attrs(s.Attributes())["rpc.response.status_code"])
	}
	slices.Sort(out)
	return out
}

// histogramCounts returns the data points' counts of histogram name, by
// "METHOD CODE" (and " error.type=TYPE" when the point has one).
func histogramCounts(rm metricdata.ResourceMetrics, name string) map[string]uint64 {
	out := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				method, _ := dp.Attributes.Value("rpc.method")
				code, _ := dp.Attributes.Value("rpc.response.status_code")
				key := method.String() + " " + code.String()
				if et, ok := dp.Attributes.Value("error.type"); ok {
					key += " error.type=" + et.String()
				}
				out[key] += dp.Count
			}
		}
	}
	return out
}

// healthCallingGreeter checks a downstream's health from inside Greet, with
// an instrumented mesh client, and fails if it is not serving.
type healthCallingGreeter struct {
	greetv1.UnimplementedGreetServiceServer
	health healthpb.HealthClient
}

func (g healthCallingGreeter) Greet(ctx context.Context, _ *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	if _, err := g.health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return nil, err
	}
	return &greetv1.GreetResponse{Greeting: "hi"}, nil
}

// TestHealthChecksAreAuditedNotTraced: on both stacks, a health check
// under a caller's trace makes no span, and an allowed one is still
// audited (the audit of an allowed call waits for its span, which a health
// check never gets); a call beside it is traced and audited with its span.
func TestHealthChecksAreAuditedNotTraced(t *testing.T) {
	t.Parallel()
	for _, stack := range []string{"grpc-go", "connect-go"} {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			tel, spans, _ := recorded(t)
			var logs testsync.Buffer
			authz := spanPolicy(t, interceptors.WithAuditAllows(1), interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			c := instrumentedPairWith(t, stack, "grpc", tel, authz)
			ctx, parent := tel.TracerProvider.Tracer("test").Start(context.Background(), "caller")
			if err := c.health(ctx); err != nil {
				t.Fatal(err)
			}
			if got := spanNames(spans.Ended()); len(got) != 0 {
				t.Fatalf("a health check made spans %v", got)
			}
			if err := c.greet(ctx, "ok"); err != nil {
				t.Fatal(err)
			}
			parent.End()
			out := logs.String()
			health := regexp.MustCompile(`msg="authz decision" caller=spiffe://example.org/ns/app/sa/friend method=/grpc.health.v1.Health/Check decision=allow rule=\S+ dry_run=false\n`)
			greet := regexp.MustCompile(`msg="authz decision" caller=spiffe://example.org/ns/app/sa/friend method=/greet.v1.GreetService/Greet decision=allow rule=friend dry_run=false trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}\n`)
			if !health.MatchString(out) || !greet.MatchString(out) {
				t.Fatalf("audit log lacks the health check's or the call's line:\n%s", out)
			}
		})
	}
}

// TestHealthCheckInsideACallLeavesItsSpan: a health check a grpc-go handler
// makes through an instrumented client is not instrumented, and does not
// end (or give its status to) the span of the call being served: client and
// server keep their calls apart in the context (once, the client took the
// served call's method for the health check's and ended its span when the
// check did).
func TestHealthCheckInsideACallLeavesItsSpan(t *testing.T) {
	t.Parallel()
	tel, spans, reader := recorded(t)
	pki := testpki.New(t, "example.org")
	server := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	friend := mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}

	downstream, err := mesh.NewGRPCServer(server, mesh.WithAuthorizer(spanPolicy(t)), mesh.WithCoverageWarnings())
	if err != nil {
		t.Fatal(err)
	}
	hconn, err := mesh.DialGRPC(serve(t, downstream.Serve), friend, spiffeid.RequireFromString(greeterID), mesh.WithClientTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hconn.Close() })

	srv, err := mesh.NewGRPCServer(server, mesh.WithAuthorizer(spanPolicy(t)), mesh.WithTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, healthCallingGreeter{health: healthpb.NewHealthClient(hconn)})
	conn, err := mesh.DialGRPC(serve(t, srv.Serve), friend, spiffeid.RequireFromString(greeterID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{}); err != nil {
		t.Fatal(err)
	}
	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "greet.v1.GreetService/Greet" || ended[0].SpanKind() != trace.SpanKindServer {
		t.Fatalf("spans %v, want the Greet server span alone", spanNames(ended))
	}
	if a := attrs(ended[0].Attributes()); a["rpc.response.status_code"] != "OK" || ended[0].Status().Code != otelcodes.Unset {
		t.Fatalf("Greet span: status code %q, status %+v", a["rpc.response.status_code"], ended[0].Status())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := histogramCounts(rm, "rpc.client.call.duration"); len(got) != 0 {
		t.Fatalf("client calls recorded: %v, want none (a health check)", got)
	}
	if got := histogramCounts(rm, "rpc.server.call.duration"); fmt.Sprint(got) != "map[greet.v1.GreetService/Greet OK:1]" {
		t.Fatalf("server calls recorded: %v", got)
	}
}

// TestUnservedMethodMakesNoSeries: a grpc-go caller that a wildcard rule
// lets through may name any method; one the server does not serve makes
// neither a span nor a metric series (grpc-go's stats handlers were told
// of it before the method was looked up, so callers chose span names and
// series), and a served one does.
func TestUnservedMethodMakesNoSeries(t *testing.T) {
	t.Parallel()
	tel, spans, reader := recorded(t)
	tel.TrustRemote = false
	pki := testpki.New(t, "example.org")
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()},
		mesh.WithAuthorizer(spanPolicy(t)), mesh.WithTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, spanGRPCGreeter{})
	conn, err := mesh.DialGRPC(serve(t, srv.Serve), mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for i := range 3 {
		err := conn.Invoke(context.Background(), fmt.Sprintf("/greet.v1.GreetService/Bogus%d", i), &greetv1.GreetRequest{}, &greetv1.GreetResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("unserved method: %v, want Unimplemented", err)
		}
	}
	if err := conn.Invoke(context.Background(), "/greet.v1.GreetService/Greet", &greetv1.GreetRequest{Name: "ok"}, &greetv1.GreetResponse{}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name()+" "+attrs(s.Attributes())["rpc.method"])
	}
	slices.Sort(names)
	if want := []string{"greet.v1.GreetService/Greet greet.v1.GreetService/Greet"}; !slices.Equal(names, want) {
		t.Fatalf("spans (name rpc.method) %q, want %q", names, want)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(histogramCounts(rm, "rpc.server.call.duration")); got != "map[greet.v1.GreetService/Greet OK:1]" {
		t.Fatalf("server calls recorded: %s", got)
	}
}

// TestAbandonedStreamEndsItsSpan: a client that cancels a server stream
// and never reads it to the end, nor closes it, still gets its client span
// ended, CANCELLED (as otelconnect does), on both stacks.
func TestAbandonedStreamEndsItsSpan(t *testing.T) {
	t.Parallel()
	for _, stack := range []string{"grpc-go", "connect-go"} {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			tel, spans, _ := recorded(t)
			pki := testpki.New(t, "example.org")
			server := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
			client := mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// first starts a stream of 1000 numbers and reads the first.
			var first func() error
			if stack == "grpc-go" {
				srv, err := mesh.NewGRPCServer(server, mesh.WithAuthorizer(spanPolicy(t)))
				if err != nil {
					t.Fatal(err)
				}
				greetv1.RegisterGreetServiceServer(srv, spanGRPCGreeter{})
				conn, err := mesh.DialGRPC(serve(t, srv.Serve), client, spiffeid.RequireFromString(greeterID), mesh.WithClientTelemetry(tel))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				first = func() error {
					s, err := greetv1.NewGreetServiceClient(conn).Count(ctx, &greetv1.CountRequest{N: 1000})
					if err == nil {
						_, err = s.Recv()
					}
					return err
				}
			} else {
				srv, err := mesh.NewConnectServer(server, mesh.WithAuthorizer(spanPolicy(t)))
				if err != nil {
					t.Fatal(err)
				}
				if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, spanConnectGreeter{}); err != nil {
					t.Fatal(err)
				}
				addr := serve(t, srv.Serve)
				hc, err := mesh.NewHTTPClient(client, spiffeid.RequireFromString(greeterID))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(hc.CloseIdleConnections)
				copts, err := mesh.ConnectClientOptions(client, mesh.WithClientTelemetry(tel))
				if err != nil {
					t.Fatal(err)
				}
				first = func() error {
					s, err := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, copts...).Count(ctx, connect.NewRequest(&greetv1.CountRequest{N: 1000}))
					if err == nil && !s.Receive() {
						err = fmt.Errorf("no first message: %w", s.Err())
					}
					return err
				}
			}
			if err := first(); err != nil {
				t.Fatal(err)
			}
			cancel() // and walk away: no Receive to the end, no Close
			deadline := time.Now().Add(10 * time.Second)
			for len(spans.Ended()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			ended := spans.Ended()
			if len(ended) != 1 || ended[0].SpanKind() != trace.SpanKindClient {
				t.Fatalf("spans %v, want the client span of the stream", spanNames(ended))
			}
			if code := attrs(ended[0].Attributes())["rpc.response.status_code"]; code != "CANCELLED" {
				t.Fatalf("client span status code %q, want CANCELLED", code)
			}
		})
	}
}

// TestPanickingHandlerEndsItsSpan: on both stacks, a handler that panics
// still has its server span ended, as INTERNAL (an error), and its call
// counted; the caller gets Internal. On connect-go the span was left open
// (the recovery interceptor is outside the instrumentation's).
func TestPanickingHandlerEndsItsSpan(t *testing.T) {
	t.Parallel()
	for _, stack := range []string{"grpc-go", "connect-go"} {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			tel, spans, reader := recorded(t)
			c := instrumentedPair(t, stack, "grpc", tel)
			if err := c.greet(context.Background(), "panic"); status.Code(err) != codes.Internal && connect.CodeOf(err) != connect.CodeInternal {
				t.Fatalf("Greet(panic): %v, want Internal", err)
			}
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			if got := histogramCounts(rm, "rpc.server.call.duration"); fmt.Sprint(got) != "map[greet.v1.GreetService/Greet INTERNAL error.type=INTERNAL:1]" {
				t.Errorf("server calls recorded: %v", got)
			}
			for _, s := range spans.Ended() {
				if s.SpanKind() == trace.SpanKindServer {
					if code := attrs(s.Attributes())["rpc.response.status_code"]; code != "INTERNAL" || s.Status().Code != otelcodes.Error {
						t.Fatalf("server span: status code %q, status %+v", code, s.Status())
					}
					return
				}
			}
			t.Fatalf("no server span: %v", spanNames(spans.Ended()))
		})
	}
}
