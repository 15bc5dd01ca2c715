package mesh_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/txn"
)

const (
	edgeID    = "spiffe://example.org/ns/app/sa/edge"
	aliceUser = "spiffe://example.org/user/alice"
	rogueID   = "spiffe://example.org/ns/app/sa/rogue"
)

// subjects records the verified subject each backend call carried.
type subjects struct {
	mu  sync.Mutex
	got []string
}

func (s *subjects) add(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok, ok := txn.FromContext(ctx); ok {
		s.got = append(s.got, tok.Subject().String())
	} else {
		s.got = append(s.got, "<none>")
	}
}

func (s *subjects) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// backendAuthorizer: the edge may greet only on behalf of users, and its
// tokens are trusted; the rest is covered for the coverage check.
func backendAuthorizer(t *testing.T, pki *testpki.PKI) *interceptors.Authorizer {
	t.Helper()
	e, err := policy.Compile(policy.Policy{TxnIssuers: []string{edgeID}, Rules: []policy.Rule{
		{Name: "edge-for-users", Effect: policy.Allow, From: []string{edgeID}, To: []string{"/greet.v1.GreetService/Greet"}, Subject: []string{"spiffe://example.org/user/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e, interceptors.WithTransactionTokens(pki.Bundle(), pki.TrustDomain()))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestTransactionTokensAcrossHops: the edge mints a token for its verified
// caller; the mesh client forwards it; the backend verifies it and decides
// on its subject. Without a token, or with one a non-minter signed, the
// backend refuses the call as unauthenticated, although the direct peer is
// the edge itself. Backends on both stacks.
func TestTransactionTokensAcrossHops(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T, creds mesh.Credentials, a *interceptors.Authorizer, rec *subjects) string{
		"grpc-go": func(t *testing.T, creds mesh.Credentials, a *interceptors.Authorizer, rec *subjects) string {
			record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				rec.add(ctx)
				return h(ctx, req)
			}
			srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(a), mesh.WithCoverageWarnings(),
				mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{record}, nil))
			if err != nil {
				t.Fatal(err)
			}
			greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
			return serve(t, srv.Serve)
		},
		"connect-go": func(t *testing.T, creds mesh.Credentials, a *interceptors.Authorizer, rec *subjects) string {
			record := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					rec.add(ctx)
					return next(ctx, req)
				}
			})
			srv, err := mesh.NewConnectServer(creds, mesh.WithAuthorizer(a), mesh.WithCoverageWarnings(),
				mesh.WithConnectHandlerOptions(connect.WithInterceptors(record)))
			if err != nil {
				t.Fatal(err)
			}
			if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		},
	}
	for name, startBackend := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "example.org")
			rec := &subjects{}
			backendAddr := startBackend(t, mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, backendAuthorizer(t, pki), rec)

			// The edge: users may greet; each call gets a token for its
			// caller and the handler greets the backend in its context.
			edgeCreds := mesh.Credentials{SVID: pki.SVID(t, edgeID), Bundles: pki.Bundle()}
			conn, err := mesh.DialGRPC(backendAddr, edgeCreds, spiffeid.RequireFromString(greeterID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			backend := greetv1.NewGreetServiceClient(conn)
			minter, err := txn.NewMinter(edgeCreds.SVID, pki.TrustDomain())
			if err != nil {
				t.Fatal(err)
			}
			e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
				{Name: "users-greet", Effect: policy.Allow, From: []string{"spiffe://example.org/user/*"}, To: []string{"/greet.v1.GreetService/Greet"}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			edgeAuthz, err := interceptors.NewAuthorizer(e, interceptors.WithTxnMinter(minter))
			if err != nil {
				t.Fatal(err)
			}
			edge, err := mesh.NewConnectServer(edgeCreds, mesh.WithAuthorizer(edgeAuthz), mesh.WithCoverageWarnings())
			if err != nil {
				t.Fatal(err)
			}
			if err := mesh.Mount(edge, greetv1connect.NewGreetServiceHandler, relay{backend}); err != nil {
				t.Fatal(err)
			}
			edgeAddr := serve(t, edge.Serve)

			hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, aliceUser), Bundles: pki.Bundle()}, spiffeid.RequireFromString(edgeID))
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			if _, err := greetv1connect.NewGreetServiceClient(hc, "https://"+edgeAddr).Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{Name: "x"})); err != nil {
				t.Fatalf("alice through the edge: %v", err)
			}
			if got := rec.list(); len(got) != 1 || got[0] != aliceUser {
				t.Fatalf("backend saw subjects %v, want [%s]", got, aliceUser)
			}

			// The edge's own certificate, but no token: refused.
			_, err = backend.Greet(context.Background(), &greetv1.GreetRequest{})
			if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "transaction token required for /greet.v1.GreetService/Greet" {
				t.Errorf("direct call without a token: %v", err)
			}
			// A token a workload that is no minter signed: refused.
			rogue, err := txn.NewMinter(pki.SVID(t, rogueID), pki.TrustDomain())
			if err != nil {
				t.Fatal(err)
			}
			forged, err := rogue.Mint(context.Background(), txn.Request{Subject: spiffeid.RequireFromString(aliceUser), Method: "/greet.v1.GreetService/Greet"})
			if err != nil {
				t.Fatal(err)
			}
			for name, raw := range map[string]string{"non-minter": forged.Raw(), "truncated": forged.Raw()[:len(forged.Raw())-10], "oversized": strings.Repeat("a", 9<<10)} {
				ctx := metadata.AppendToOutgoingContext(context.Background(), txn.MetadataKey, raw)
				_, err := backend.Greet(ctx, &greetv1.GreetRequest{})
				if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.HasPrefix(st.Message(), "invalid transaction token: txn: ") {
					t.Errorf("%s token: %v", name, err)
				}
			}
			if got := rec.list(); len(got) != 1 {
				t.Errorf("refused calls reached the backend's handler: %v", got)
			}
		})
	}
}

// relay greets the backend in the context of the call it serves.
type relay struct {
	backend greetv1.GreetServiceClient
}

func (r relay) Greet(ctx context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	resp, err := r.backend.Greet(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (relay) Count(context.Context, *connect.Request[greetv1.CountRequest], *connect.ServerStream[greetv1.CountResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, nil)
}

// txnEcho greets with the id of the call's transaction token.
type txnEcho struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (txnEcho) Greet(ctx context.Context, _ *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	tok, ok := txn.FromContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, nil)
	}
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: tok.ID()}), nil
}

// TestEdgeTxnIsTheTraceID: with tracing on, the token an edge mints has the
// trace id of the call's server span as its txn (the draft's advice), on a
// connect-go edge, whose authorization runs before the span exists.
func TestEdgeTxnIsTheTraceID(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	edgeCreds := mesh.Credentials{SVID: pki.SVID(t, edgeID), Bundles: pki.Bundle()}
	minter, err := txn.NewMinter(edgeCreds.SVID, pki.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-greet", Effect: policy.Allow, From: []string{"spiffe://example.org/user/*"}, To: []string{"/greet.v1.GreetService/Greet"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e, interceptors.WithTxnMinter(minter))
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	edge, err := mesh.NewConnectServer(edgeCreds, mesh.WithAuthorizer(a), mesh.WithCoverageWarnings(),
		mesh.WithTelemetry(mesh.Telemetry{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
			MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(edge, greetv1connect.NewGreetServiceHandler, txnEcho{}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, edge.Serve)
	hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, aliceUser), Bundles: pki.Bundle()}, spiffeid.RequireFromString(edgeID))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	resp, err := greetv1connect.NewGreetServiceClient(hc, "https://"+addr).Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want the edge's server span", len(ended))
	}
	if got, want := resp.Msg.GetGreeting(), ended[0].SpanContext().TraceID().String(); got != want {
		t.Errorf("txn = %s, want the trace id %s", got, want)
	}
}

// TestVerifiedChainOnSpans: with a verified transaction token, a server span
// records the caller chain the token and the peer prove (subject, minter,
// direct peer), not the baggage, which a caller can write: alice's forged
// chain naming mallory does not reach the backend's span.
func TestVerifiedChainOnSpans(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	spans := tracetest.NewSpanRecorder()
	tel := mesh.Telemetry{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider: metricnoop.NewMeterProvider(), Propagator: prop, TrustRemote: true}
	backend, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()},
		mesh.WithAuthorizer(backendAuthorizer(t, pki)), mesh.WithCoverageWarnings(), mesh.WithTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(backend, grpcGreeter{})
	backendAddr := serve(t, backend.Serve)

	edgeCreds := mesh.Credentials{SVID: pki.SVID(t, edgeID), Bundles: pki.Bundle()}
	conn, err := mesh.DialGRPC(backendAddr, edgeCreds, spiffeid.RequireFromString(greeterID), mesh.WithClientTelemetry(tel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	minter, err := txn.NewMinter(edgeCreds.SVID, pki.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-greet", Effect: policy.Allow, From: []string{"spiffe://example.org/user/*"}, To: []string{"/greet.v1.GreetService/Greet"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	edgeAuthz, err := interceptors.NewAuthorizer(e, interceptors.WithTxnMinter(minter))
	if err != nil {
		t.Fatal(err)
	}
	edgeTel := tel
	edgeTel.TrustRemote = false
	edge, err := mesh.NewConnectServer(edgeCreds, mesh.WithAuthorizer(edgeAuthz), mesh.WithCoverageWarnings(), mesh.WithTelemetry(edgeTel))
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(edge, greetv1connect.NewGreetServiceHandler, relay{greetv1.NewGreetServiceClient(conn)}); err != nil {
		t.Fatal(err)
	}
	edgeAddr := serve(t, edge.Serve)
	hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, aliceUser), Bundles: pki.Bundle()}, spiffeid.RequireFromString(edgeID))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	req := connect.NewRequest(&greetv1.GreetRequest{})
	req.Header().Set("baggage", "trustmesh.chain=spiffe%3A%2F%2Fexample.org%2Fuser%2Fmallory")
	if _, err := greetv1connect.NewGreetServiceClient(hc, "https://"+edgeAddr).Greet(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	var chains [][]string
	for _, s := range spans.Ended() {
		if s.SpanKind() != trace.SpanKindServer || s.Name() != "greet.v1.GreetService/Greet" {
			continue
		}
		for _, kv := range s.Attributes() {
			if kv.Key == telemetry.CallerChainKey {
				chains = append(chains, kv.Value.AsStringSlice())
			}
		}
	}
	// The backend's server span ends first, then the edge's.
	want := [][]string{{aliceUser, edgeID}, {aliceUser}}
	if !slices.EqualFunc(chains, want, slices.Equal[[]string]) {
		t.Errorf("server span chains = %q, want %q (a forged chain must not reach them)", chains, want)
	}
}
