package mesh_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/telemetry"
)

// TestDeniedCallsFollowTheEdgeTraceRule: at an edge (a server that does not
// trust remote trace context), a caller's traceparent does not choose the
// trace of its calls: allowed calls start a new trace linked to the
// caller's, and so do denied ones (before, a denied call was audited under
// the trace ID the caller sent, and otelgrpc made every grpc-go server
// continue the caller's trace). With TrustRemote both continue the caller's
// trace. On both stacks; denied spans carry the RPC attributes.
func TestDeniedCallsFollowTheEdgeTraceRule(t *testing.T) {
	t.Parallel()
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const traceparent = "00-" + callerTrace + "-00f067aa0ba902b7-01"
	for _, stack := range []struct{ name, system string }{{"grpc-go", "grpc"}, {"connect-go", "connectrpc"}} {
		for _, trustRemote := range []bool{false, true} {
			pki := testpki.New(t, "example.org")
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			creds := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
			opts := mesh.WithServerOptions(mesh.WithAuthorizer(greetPolicy(t)), mesh.WithCoverageWarnings(),
				mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tp, MeterProvider: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}, TrustRemote: trustRemote}))
			// call makes one call as caller, sending the caller's traceparent.
			var call func(caller string)
			if stack.name == "grpc-go" {
				srv, err := mesh.NewGRPCServer(creds, opts)
				if err != nil {
					t.Fatal(err)
				}
				greetv1.RegisterGreetServiceServer(srv, spanGRPCGreeter{})
				addr := serve(t, srv.Serve)
				call = func(caller string) {
					conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, caller), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
					_, _ = greetv1.NewGreetServiceClient(conn).Greet(ctx, &greetv1.GreetRequest{Name: "ok"})
				}
			} else {
				srv, err := mesh.NewConnectServer(creds, opts)
				if err != nil {
					t.Fatal(err)
				}
				if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err != nil {
					t.Fatal(err)
				}
				addr := serve(t, srv.Serve)
				call = func(caller string) {
					hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, caller), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
					if err != nil {
						t.Fatal(err)
					}
					defer hc.CloseIdleConnections()
					req := connect.NewRequest(&greetv1.GreetRequest{})
					req.Header().Set("traceparent", traceparent)
					_, _ = greetv1connect.NewGreetServiceClient(hc, "https://"+addr).Greet(context.Background(), req)
				}
			}
			call(friendID)
			call(strangerID)
			ended := spans.Ended()
			if len(ended) != 2 {
				t.Fatalf("%s trustRemote=%v: %d spans, want 2 (one allowed, one denied)", stack.name, trustRemote, len(ended))
			}
			for _, s := range ended {
				continued := s.SpanContext().TraceID().String() == callerTrace
				if continued != trustRemote {
					t.Errorf("%s trustRemote=%v: span %q has trace %s (continues the caller's: %v)", stack.name, trustRemote, s.Name(), s.SpanContext().TraceID(), continued)
				}
				if !trustRemote && (len(s.Links()) != 1 || s.Links()[0].SpanContext.TraceID().String() != callerTrace) {
					t.Errorf("%s span %q: links %v, want one to the caller's trace", stack.name, s.Name(), s.Links())
				}
				deniedSpanAttributes(t, s, stack.system)
			}
		}
	}
}

// deniedSpanAttributes checks that a denied call's span (one whose
// decision is deny) has the RPC attributes an answered call's span has, so
// that a query by rpc.method finds the denials too.
func deniedSpanAttributes(t *testing.T, s sdktrace.ReadOnlySpan, system string) {
	t.Helper()
	a := attrs(s.Attributes())
	if a[attribute.Key(telemetry.AuthzDecisionKey)] != telemetry.DecisionDeny {
		return
	}
	if a["rpc.method"] != "greet.v1.GreetService/Greet" || a["rpc.system.name"] != system ||
		a["rpc.response.status_code"] != "PERMISSION_DENIED" || a["error.type"] != "PERMISSION_DENIED" {
		t.Errorf("denied span %q: rpc.method %q rpc.system.name %q rpc.response.status_code %q error.type %q, want greet.v1.GreetService/Greet %s PERMISSION_DENIED",
			s.Name(), a["rpc.method"], a["rpc.system.name"], a["rpc.response.status_code"], a["error.type"], system)
	}
}
