package mesh_test

import (
	"context"
	"crypto/x509"
	"errors"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/tokens"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

const (
	lbID        = "spiffe://shop.example/ns/edge/sa/lb"
	inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
	ordersSAID  = "spiffe://shop.example/ns/shop/sa/orders"
	paymentsID  = "spiffe://shop.example/ns/shop/sa/payments"
	gatewaySAID = "spiffe://shop.example/ns/shop/sa/gateway"
)

// whoSaw records, for each call a handler served, who the mTLS peer was
// and, for a call through a front proxy, the JWT-SVID's subject.
type whoSaw struct {
	mu  sync.Mutex
	got []string
}

func (w *whoSaw) add(ctx context.Context) {
	peer, _ := identity.FromContext(ctx)
	entry := "peer=" + peer.ID.String()
	if p, ok := interceptors.ProxiedFromContext(ctx); ok {
		entry += " caller=" + p.Caller.ID.String() + " via=" + p.Via.ID.String()
	}
	w.mu.Lock()
	w.got = append(w.got, entry)
	w.mu.Unlock()
}

func (w *whoSaw) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

type recordingGreeter struct {
	greetv1.UnimplementedGreetServiceServer
	saw *whoSaw
}

func (g recordingGreeter) Greet(ctx context.Context, _ *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	g.saw.add(ctx)
	return &greetv1.GreetResponse{Greeting: "hello"}, nil
}

func (g recordingGreeter) Count(_ *greetv1.CountRequest, stream grpc.ServerStreamingServer[greetv1.CountResponse]) error {
	g.saw.add(stream.Context())
	return stream.Send(&greetv1.CountResponse{})
}

type recordingConnectGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
	saw *whoSaw
}

func (g recordingConnectGreeter) Greet(ctx context.Context, _ *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	g.saw.add(ctx)
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "hello"}), nil
}

func (g recordingConnectGreeter) Count(ctx context.Context, _ *connect.Request[greetv1.CountRequest], stream *connect.ServerStream[greetv1.CountResponse]) error {
	g.saw.add(ctx)
	return stream.Send(&greetv1.CountResponse{})
}

// countingSource counts the JWT-SVIDs it fetches.
type countingSource struct {
	src mesh.JWTSource
	n   atomic.Int32
}

func (c *countingSource) FetchJWTSVID(ctx context.Context, audience string) (*identity.JWTSVID, error) {
	c.n.Add(1)
	return c.src.FetchJWTSVID(ctx, audience)
}

// failingSource has no JWT-SVID to give.
type failingSource struct{}

func (failingSource) FetchJWTSVID(context.Context, string) (*identity.JWTSVID, error) {
	return nil, errors.New("certs: no identity")
}

// TestFrontProxiesOverMTLS: a server told that the load balancer is a front
// proxy decides the calls it forwards on the JWT-SVID they carry (sent by
// the mesh client option WithJWTSVID), and records both the caller and the
// proxy; the same JWT-SVID from any other peer changes nothing. On both
// stacks, over mutual TLS on loopback, for unary and streaming calls.
func TestFrontProxiesOverMTLS(t *testing.T) {
	t.Parallel()
	ca, creds := shopCA(t)
	jwtFor := func(id string) mesh.JWTSource { return ca.JWTSource(spiffeid.RequireFromString(id), 0) }
	inventory := spiffeid.RequireFromString(inventoryID)

	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-greets", Effect: policy.Allow, From: []string{ordersSAID}, To: []string{"/greet.v1.GreetService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// serverOptions authorize with a fresh authorizer auditing to logs.
	serverOptions := func(t *testing.T, logs *testsync.Buffer) []mesh.ServerOption {
		authz, err := interceptors.NewAuthorizer(e, interceptors.WithAuditAllows(1),
			interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))))
		if err != nil {
			t.Fatal(err)
		}
		return []mesh.ServerOption{mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(),
			mesh.WithFrontProxies(ca, spiffeid.RequireFromString(lbID))}
	}

	type caller struct {
		greet func(ctx context.Context) error
		count func(ctx context.Context) error
	}
	stacks := map[string]struct {
		start func(t *testing.T, saw *whoSaw, serverOpts []mesh.ServerOption) string
		dial  func(t *testing.T, addr, id string, opts ...mesh.ClientOption) caller
	}{
		"grpc-go": {
			start: func(t *testing.T, saw *whoSaw, serverOpts []mesh.ServerOption) string {
				opts := make([]mesh.GRPCServerOption, len(serverOpts))
				for i, o := range serverOpts {
					opts[i] = o
				}
				srv, err := mesh.NewGRPCServer(creds(inventoryID), opts...)
				if err != nil {
					t.Fatal(err)
				}
				greetv1.RegisterGreetServiceServer(srv, recordingGreeter{saw: saw})
				return serve(t, srv.Serve)
			},
			dial: func(t *testing.T, addr, id string, opts ...mesh.ClientOption) caller {
				gopts := make([]mesh.GRPCClientOption, len(opts))
				for i, o := range opts {
					gopts[i] = o
				}
				conn, err := mesh.DialGRPC(addr, creds(id), inventory, gopts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				c := greetv1.NewGreetServiceClient(conn)
				return caller{
					greet: func(ctx context.Context) error { _, err := c.Greet(ctx, &greetv1.GreetRequest{}); return err },
					count: func(ctx context.Context) error {
						stream, err := c.Count(ctx, &greetv1.CountRequest{})
						if err == nil {
							_, err = stream.Recv()
						}
						return err
					},
				}
			},
		},
		"connect-go": {
			start: func(t *testing.T, saw *whoSaw, serverOpts []mesh.ServerOption) string {
				opts := make([]mesh.ConnectServerOption, len(serverOpts))
				for i, o := range serverOpts {
					opts[i] = o
				}
				srv, err := mesh.NewConnectServer(creds(inventoryID), opts...)
				if err != nil {
					t.Fatal(err)
				}
				if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, recordingConnectGreeter{saw: saw}); err != nil {
					t.Fatal(err)
				}
				return serve(t, srv.Serve)
			},
			dial: func(t *testing.T, addr, id string, opts ...mesh.ClientOption) caller {
				cc := creds(id)
				hc, err := mesh.NewHTTPClient(cc, inventory)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(hc.CloseIdleConnections)
				copts := make([]mesh.ConnectClientOption, len(opts))
				for i, o := range opts {
					copts[i] = o
				}
				clientOpts, err := mesh.ConnectClientOptions(cc, copts...)
				if err != nil {
					t.Fatal(err)
				}
				c := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, append(clientOpts, connect.WithGRPC())...)
				return caller{
					greet: func(ctx context.Context) error {
						_, err := c.Greet(ctx, connect.NewRequest(&greetv1.GreetRequest{}))
						return err
					},
					count: func(ctx context.Context) error {
						stream, err := c.Count(ctx, connect.NewRequest(&greetv1.CountRequest{}))
						if err != nil {
							return err
						}
						defer stream.Close()
						if !stream.Receive() {
							return stream.Err()
						}
						return nil
					},
				}
			},
		},
	}

	for name, stack := range stacks {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			saw, logs := &whoSaw{}, &testsync.Buffer{}
			addr := stack.start(t, saw, serverOptions(t, logs))
			testCases := []struct {
				name     string
				peer     string
				opts     []mesh.ClientOption
				wantCode codes.Code
				wantMsg  string
				wantSaw  string // what the handler saw; "" when it did not run
			}{
				{"proxy-forwarding-orders", lbID, []mesh.ClientOption{mesh.WithJWTSVID(jwtFor(ordersSAID), inventoryID)}, codes.OK, "",
					"peer=" + lbID + " caller=" + ordersSAID + " via=" + lbID},
				{"proxy-forwarding-payments", lbID, []mesh.ClientOption{mesh.WithJWTSVID(jwtFor(paymentsID), inventoryID)}, codes.PermissionDenied,
					paymentsID + " may not call /greet.v1.GreetService/", ""},
				{"proxy-without-a-jwt-svid", lbID, nil, codes.Unauthenticated,
					"JWT-SVID required: calls through front proxy " + lbID + " must carry one (authorization: Bearer)", ""},
				{"proxy-jwt-svid-for-another-server", lbID, []mesh.ClientOption{mesh.WithJWTSVID(jwtFor(ordersSAID), paymentsID)}, codes.Unauthenticated,
					`invalid JWT-SVID: identity: jwt-svid: aud ["` + paymentsID + `"] does not contain "` + inventoryID + `"`, ""},
				// Not a front proxy: the JWT-SVID changes nothing.
				{"gateway-with-a-jwt-svid-of-orders", gatewaySAID, []mesh.ClientOption{mesh.WithJWTSVID(jwtFor(ordersSAID), inventoryID)}, codes.PermissionDenied,
					gatewaySAID + " may not call /greet.v1.GreetService/", ""},
				{"orders-with-a-jwt-svid-of-payments", ordersSAID, []mesh.ClientOption{mesh.WithJWTSVID(jwtFor(paymentsID), inventoryID)}, codes.OK, "",
					"peer=" + ordersSAID},
			}
			for _, tc := range testCases {
				c := stack.dial(t, addr, tc.peer, tc.opts...)
				for _, call := range []struct {
					kind string
					do   func(context.Context) error
				}{{"unary", c.greet}, {"stream", c.count}} {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := call.do(ctx)
					cancel()
					st := status.Convert(err)
					if ce := new(connect.Error); errors.As(err, &ce) {
						st = status.New(codes.Code(ce.Code()), ce.Message())
					}
					if st.Code() != tc.wantCode || !strings.HasPrefix(st.Message(), tc.wantMsg) {
						t.Errorf("%s %s: %v %q, want %v %q", tc.name, call.kind, st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
					}
					got := saw.take()
					if tc.wantSaw == "" && len(got) != 0 || tc.wantSaw != "" && (len(got) != 1 || got[0] != tc.wantSaw) {
						t.Errorf("%s %s: handler saw %q, want %q", tc.name, call.kind, got, tc.wantSaw)
					}
				}
			}

			// The audit events of the allowed proxied calls name both.
			want := `level=INFO msg="authz decision" caller=` + ordersSAID + ` method=/greet.v1.GreetService/Greet decision=allow rule=orders-greets dry_run=false via=` + lbID + "\n"
			if out := logs.String(); strings.Count(out, want) != 1 {
				t.Errorf("want the audit line once:\n%sin:\n%s", want, out)
			}
		})
	}
}

// TestWithJWTSVIDReusesTokens: a client fetches a JWT-SVID once and reuses
// it while it is fresh; without one to be had, the call fails instead of
// going out without, on both stacks.
func TestWithJWTSVIDReusesTokens(t *testing.T) {
	t.Parallel()
	ca, issue := shopCA(t)
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-greets", Effect: policy.Allow, From: []string{ordersSAID}, To: []string{"/greet.v1.GreetService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(e)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mesh.NewGRPCServer(issue(inventoryID), mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(),
		mesh.WithFrontProxies(ca, spiffeid.RequireFromString(lbID)))
	if err != nil {
		t.Fatal(err)
	}
	saw := &whoSaw{}
	greetv1.RegisterGreetServiceServer(srv, recordingGreeter{saw: saw})
	addr := serve(t, srv.Serve)
	inventory := spiffeid.RequireFromString(inventoryID)

	src := &countingSource{src: ca.JWTSource(spiffeid.RequireFromString(ordersSAID), time.Hour)}
	conn, err := mesh.DialGRPC(addr, issue(lbID), inventory, mesh.WithJWTSVID(src, inventoryID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := greetv1.NewGreetServiceClient(conn)
	for range 3 {
		if _, err := client.Greet(context.Background(), &greetv1.GreetRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.n.Load(); n != 1 {
		t.Errorf("fetched %d JWT-SVIDs for 3 calls, want 1", n)
	}

	failing, err := mesh.DialGRPC(addr, issue(lbID), inventory, mesh.WithJWTSVID(failingSource{}, inventoryID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = failing.Close() })
	_, err = greetv1.NewGreetServiceClient(failing).Greet(context.Background(), &greetv1.GreetRequest{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), `mesh: JWT-SVID for "`+inventoryID+`": certs: no identity`) {
		t.Errorf("grpc-go without a JWT-SVID: %v", err)
	}

	// The same on connect-go, unary and streaming.
	lbCreds := issue(lbID)
	hc, err := mesh.NewHTTPClient(lbCreds, inventory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	copts, err := mesh.ConnectClientOptions(lbCreds, mesh.WithJWTSVID(failingSource{}, inventoryID))
	if err != nil {
		t.Fatal(err)
	}
	cc := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, append(copts, connect.WithGRPC())...)
	_, err = cc.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), `mesh: JWT-SVID for "`+inventoryID+`": certs: no identity`) {
		t.Errorf("connect-go unary without a JWT-SVID: %v", err)
	}
	stream, err := cc.Count(context.Background(), connect.NewRequest(&greetv1.CountRequest{}))
	if err == nil {
		if stream.Receive() {
			t.Error("connect-go stream without a JWT-SVID received a message")
		}
		err = stream.Err()
		_ = stream.Close()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), `mesh: JWT-SVID for "`+inventoryID+`": certs: no identity`) {
		t.Errorf("connect-go stream without a JWT-SVID: %v", err)
	}
	if got := saw.take(); len(got) != 3 {
		t.Errorf("handler ran %d times, want 3 (not for the calls without a token)", len(got))
	}
}

// TestWithFrontProxiesNeedsAuthorization: front proxies without an
// authorizer, or without bundles or IDs, do not build; nor does a client
// WithJWTSVID without a source.
func TestWithFrontProxiesNeedsAuthorization(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(inventoryID)})
	if err != nil {
		t.Fatal(err)
	}
	creds := mesh.Credentials{SVID: svid, Bundles: ca.Bundle()}
	lb := spiffeid.RequireFromString(lbID)
	const noAuthz = "mesh: WithFrontProxies needs WithAuthorizer: without authorization no caller is decided on"
	if _, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithFrontProxies(ca, lb)); err == nil || err.Error() != noAuthz {
		t.Errorf("grpc-go: %v", err)
	}
	if _, err := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), mesh.WithFrontProxies(ca, lb)); err == nil || err.Error() != noAuthz {
		t.Errorf("connect-go: %v", err)
	}
	const bad = "mesh: WithFrontProxies: need the JWT bundles and at least one front proxy SPIFFE ID"
	if _, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithFrontProxies(nil, lb)); err == nil || err.Error() != bad {
		t.Errorf("no bundles: %v", err)
	}
	if _, err := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), mesh.WithFrontProxies(ca)); err == nil || err.Error() != bad {
		t.Errorf("no proxies: %v", err)
	}
	if _, err := mesh.DialGRPC("127.0.0.1:1", creds, lb, mesh.WithJWTSVID(nil, inventoryID)); err == nil ||
		err.Error() != "mesh: dial 127.0.0.1:1: mesh: WithJWTSVID: need a JWT-SVID source and the audience" {
		t.Errorf("WithJWTSVID(nil): %v", err)
	}
	if _, err := mesh.ConnectClientOptions(creds, mesh.WithJWTSVID(ca.JWTSource(lb, 0), "")); err == nil ||
		err.Error() != "mesh: WithJWTSVID: need a JWT-SVID source and the audience" {
		t.Errorf("WithJWTSVID without audience: %v", err)
	}
}

// TestFrontProxySpan: the server span of a call through a front proxy names
// the JWT-SVID's subject as caller and the proxy as trustmesh.via.
func TestFrontProxySpan(t *testing.T) {
	t.Parallel()
	ca, creds := shopCA(t)
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-greets", Effect: policy.Allow, From: []string{ordersSAID}, To: []string{"/greet.v1.GreetService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(e)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	srv, err := mesh.NewGRPCServer(creds(inventoryID), mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(),
		mesh.WithFrontProxies(ca, spiffeid.RequireFromString(lbID)),
		mesh.WithTelemetry(mesh.Telemetry{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
			MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}}))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
	addr := serve(t, srv.Serve)
	conn, err := mesh.DialGRPC(addr, creds(lbID), spiffeid.RequireFromString(inventoryID),
		mesh.WithJWTSVID(ca.JWTSource(spiffeid.RequireFromString(ordersSAID), 0), inventoryID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{}); err != nil {
		t.Fatal(err)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want 1", len(ended))
	}
	got := map[attribute.Key]string{}
	for _, kv := range ended[0].Attributes() {
		got[kv.Key] = kv.Value.AsString()
	}
	if got[telemetry.ViaKey] != lbID || got[telemetry.PeerSPIFFEIDKey] != ordersSAID {
		t.Errorf("span via = %q, caller = %q; want %s via %s", got[telemetry.ViaKey], got[telemetry.PeerSPIFFEIDKey], ordersSAID, lbID)
	}
}

// shopCA is a CA for shop.example, and the credentials it issues to an ID.
func shopCA(t *testing.T) (*certs.CA, func(id string) mesh.Credentials) {
	t.Helper()
	pki := testpki.New(t, "shop.example")
	return pki.CA(), func(id string) mesh.Credentials {
		return mesh.Credentials{SVID: pki.SVID(t, id), Bundles: pki.Bundle()}
	}
}

// acceptingVerifier takes any token for its caller: a TokenVerifier of a
// user's own that does not look at the certificate binding.
type acceptingVerifier struct{}

func (acceptingVerifier) Verify(string, *x509.Certificate, time.Time) (tokens.Claims, error) {
	return tokens.Claims{Subject: ordersSAID}, nil
}

// TestFrontProxyCannotMeetTokenRules: through a front proxy the JWT-SVID in
// the authorization header never passes for the access token a
// require_token rule asks for, whatever the TokenVerifier accepts.
func TestFrontProxyCannotMeetTokenRules(t *testing.T) {
	t.Parallel()
	ca, creds := shopCA(t)
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-greets-with-token", Effect: policy.Allow, RequireToken: true, From: []string{ordersSAID}, To: []string{"/greet.v1.GreetService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(e, interceptors.WithTokenVerifier(acceptingVerifier{}))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mesh.NewGRPCServer(creds(inventoryID), mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(),
		mesh.WithFrontProxies(ca, spiffeid.RequireFromString(lbID)))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
	addr := serve(t, srv.Serve)
	conn, err := mesh.DialGRPC(addr, creds(lbID), spiffeid.RequireFromString(inventoryID),
		mesh.WithJWTSVID(ca.JWTSource(spiffeid.RequireFromString(ordersSAID), 0), inventoryID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated ||
		st.Message() != "token required for /greet.v1.GreetService/Greet, which cannot be met through a front proxy" {
		t.Errorf("proxied call to a token rule: %v", err)
	}
}
