package mesh_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/tap"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

// The callers of the greet tests: a trust domain and names of their own,
// nothing of the sample's.
const (
	greeterID  = "spiffe://example.org/ns/app/sa/greeter"
	friendID   = "spiffe://example.org/ns/app/sa/friend"
	strangerID = "spiffe://example.org/ns/app/sa/stranger"
)

// greeter counts the calls that reached it.
type greeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
	calls atomic.Int64
}

func (g *greeter) Greet(_ context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	g.calls.Add(1)
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "hello " + req.Msg.GetName()}), nil
}

// greetPolicy lets only the friend greet.
func greetPolicy(t *testing.T) *interceptors.Authorizer {
	t.Helper()
	return authorizerFor(t, policy.Policy{Rules: []policy.Rule{
		{Name: "friend-greets", Effect: policy.Allow, From: []string{friendID}, To: []string{"/greet.v1.GreetService/Greet"}},
	}})
}

// authorizerFor compiles p with opts and builds an Authorizer on it.
func authorizerFor(t *testing.T, p policy.Policy, opts ...policy.CompileOption) *interceptors.Authorizer {
	t.Helper()
	e, err := policy.Compile(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMountedHandlerIsAuthorizedWhateverItsOptions: a handler built without
// the server's handler options (here: a constructor that drops them, as
// mounting NewGreetServiceHandler(impl) with no options once did) is still
// authorized before it runs, on every protocol connect-go serves.
func TestMountedHandlerIsAuthorizedWhateverItsOptions(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()},
		mesh.WithAuthorizer(greetPolicy(t)), mesh.WithCoverageWarnings())
	if err != nil {
		t.Fatal(err)
	}
	impl := &greeter{}
	withoutOptions := func(h greetv1connect.GreetServiceHandler, _ ...connect.HandlerOption) (string, http.Handler) {
		return greetv1connect.NewGreetServiceHandler(h)
	}
	if err := mesh.Mount(srv, withoutOptions, impl); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	protocols := map[string][]connect.ClientOption{
		"connect":     nil,
		"connect-get": {connect.WithHTTPGet()},
		"grpc":        {connect.WithGRPC()},
		"grpc-web":    {connect.WithGRPCWeb()},
	}
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			call := func(caller string) (*connect.Response[greetv1.GreetResponse], error) {
				hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, caller), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
				if err != nil {
					t.Fatal(err)
				}
				defer hc.CloseIdleConnections()
				client := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, opts...)
				return client.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{Name: caller}))
			}
			_, err := call(strangerID)
			if want := "permission_denied: " + strangerID + " may not call /greet.v1.GreetService/Greet"; err == nil || err.Error() != want {
				t.Errorf("stranger: error %v, want %s", err, want)
			}
			resp, err := call(friendID)
			if err != nil || resp.Msg.GetGreeting() != "hello "+friendID {
				t.Errorf("friend: %v, %v; want a greeting", resp, err)
			}
		})
	}
	t.Cleanup(func() {
		// One allowed call per protocol reached the handler, no denied one.
		if got := impl.calls.Load(); got != int64(len(protocols)) {
			t.Errorf("handler ran %d times, want %d (the friend's calls only)", got, len(protocols))
		}
	})
}

// TestHandlerBehindAnotherServerIdentifiesNoOne: the server's handler,
// served by an http.Server the caller configured (here one that asks for a
// client certificate but verifies none), turns no certificate into an
// identity: every call is Unauthenticated, even with authorization off.
func TestHandlerBehindAnotherServerIdentifiesNoOne(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
	if err != nil {
		t.Fatal(err)
	}
	impl := &greeter{}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, impl); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.EnableHTTP2 = true
	hs.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	rogue := testpki.New(t, "example.org").SVID(t, friendID) // the friend's name, from a CA nobody trusts
	client := hs.Client()
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{*tlsCert(rogue.PrivateKey, rogue.Certificates...)}
	_, err = greetv1connect.NewGreetServiceClient(client, hs.URL).Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{}))
	if want := "unauthenticated: no verified peer certificate on this connection"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if n := impl.calls.Load(); n != 0 {
		t.Errorf("handler ran %d times, want 0", n)
	}
}

// TestMountRefusesWhatItCannotServe: Mount's errors, each naming the cause.
func TestMountRefusesWhatItCannotServe(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, struct{}{}); err == nil ||
		err.Error() != "mesh: Mount: struct {} does not implement greetv1connect.GreetServiceHandler" {
		t.Errorf("wrong impl type: %v", err)
	}
	unregistered := func(struct{}, ...connect.HandlerOption) (string, http.Handler) {
		return "/no.such.v1.Service/", http.NotFoundHandler()
	}
	if err := mesh.Mount(srv, unregistered, struct{}{}); err == nil ||
		!strings.HasPrefix(err.Error(), "mesh: Mount: mesh: service no.such.v1.Service: no descriptor registered") {
		t.Errorf("unregistered service: %v", err)
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err == nil ||
		err.Error() != "mesh: Mount greet.v1.GreetService: already mounted" {
		t.Errorf("mounted twice: %v", err)
	}
	srv.Handler()
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err == nil ||
		err.Error() != "mesh: Mount greet.v1.GreetService: the server has started" {
		t.Errorf("mounted after start: %v", err)
	}
}

// TestDialOptionsCannotReplaceMTLS: credentials among the dial options are
// an error at dial time, never a plaintext (or otherwise weaker) connection.
func TestDialOptionsCannotReplaceMTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	creds := mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}
	server := spiffeid.RequireFromString(greeterID)
	const want = "mesh: dial 127.0.0.1:1: WithDialOptions: transport credentials are the mesh's mTLS; remove grpc.WithTransportCredentials / grpc.WithCredentialsBundle (or grpc.WithInsecure) from the dial options"
	conn, err := mesh.DialGRPC("127.0.0.1:1", creds, server, mesh.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err == nil || err.Error() != want {
		t.Errorf("insecure credentials: %v, %v; want %s", conn, err, want)
	}
	// Options that leave the credentials alone are fine.
	conn, err = mesh.DialGRPC("127.0.0.1:1", creds, server, mesh.WithDialOptions(grpc.WithUserAgent("greeter-test")))
	if err != nil {
		t.Fatalf("harmless option: %v", err)
	}
	_ = conn.Close()
}

// TestOptionsBelongToOneStack: an option of one stack cannot be given to the
// other (it does not compile), and options for both apply to both.
func TestOptionsBelongToOneStack(t *testing.T) {
	t.Parallel()
	grpcOnly := map[string]any{
		"WithGRPCServerOptions": mesh.WithGRPCServerOptions(),
		"WithGRPCInterceptors":  mesh.WithGRPCInterceptors(nil, nil),
	}
	for name, o := range grpcOnly {
		if reflect.TypeOf(o).Implements(reflect.TypeFor[mesh.ConnectServerOption]()) {
			t.Errorf("%s is a ConnectServerOption: NewConnectServer would accept and ignore it", name)
		}
	}
	if reflect.TypeOf(mesh.WithConnectHandlerOptions()).Implements(reflect.TypeFor[mesh.GRPCServerOption]()) {
		t.Error("WithConnectHandlerOptions is a GRPCServerOption: NewGRPCServer would accept and ignore it")
	}
	if reflect.TypeOf(mesh.WithDialOptions()).Implements(reflect.TypeFor[mesh.ConnectClientOption]()) {
		t.Error("WithDialOptions is a ConnectClientOption: ConnectClientOptions would accept and ignore it")
	}
	if !reflect.TypeOf(mesh.WithLogger(nil)).Implements(reflect.TypeFor[mesh.ServerOption]()) {
		t.Error("WithLogger applies to one stack only")
	}
}

// TestOptionValuesAreChecked: an option given a value it cannot use is an
// error from the constructor, not a silent default.
func TestOptionValuesAreChecked(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	creds := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	testCases := []struct {
		opt  mesh.ServerOption
		want string
	}{
		{mesh.WithLogger(nil), "mesh: WithLogger(nil): pass a logger (slog.New(slog.DiscardHandler) to log nothing)"},
		{mesh.WithShutdownTimeout(0), "mesh: WithShutdownTimeout(0s): must be positive"},
		{mesh.WithRecheckInterval(-time.Second), "mesh: WithRecheckInterval(-1s): must be positive"},
		{mesh.WithMaxConcurrentStreams(0), "mesh: WithMaxConcurrentStreams(0): must be at least 1"},
		{mesh.WithAuthorizer(nil), "mesh: WithAuthorizer(nil): build one with interceptors.NewAuthorizer"},
		{mesh.WithRateLimiter(nil), "mesh: WithRateLimiter(nil): build one with interceptors.NewRateLimiter"},
		{mesh.WithServerOptions(nil), "mesh: WithServerOptions: nil option"},
		{mesh.WithAuthorizer(&interceptors.Authorizer{}), "mesh: WithAuthorizer: an Authorizer with no policy (a zero interceptors.Authorizer{}): build one with interceptors.NewAuthorizer"},
		{mesh.WithTrustDomains(spiffeid.TrustDomain{}), "mesh: WithTrustDomains: the zero trust domain (use spiffeid.RequireTrustDomainFromString)"},
		{mesh.WithTrustDomains(), "mesh: WithTrustDomains(): no trust domain given (leave the option out to accept the server's own)"},
	}
	for _, tc := range testCases {
		_, gerr := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), tc.opt)
		_, cerr := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), tc.opt)
		for stack, err := range map[string]error{"grpc-go": gerr, "connect-go": cerr} {
			if err == nil || err.Error() != tc.want {
				t.Errorf("%s: %v, want %s", stack, err, tc.want)
			}
		}
	}
	var noSVID *x509svid.SVID
	if _, err := mesh.NewGRPCServer(mesh.Credentials{SVID: noSVID, Bundles: pki.Bundle()}, mesh.WithoutAuthorization()); err == nil ||
		err.Error() != "mesh: credentials: no SVID source" {
		t.Errorf("a typed nil SVID source: %v", err)
	}
	if _, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(greetPolicy(t)), mesh.WithGRPCServerOptions(grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) { return ctx, nil }))); err == nil ||
		!strings.Contains(err.Error(), "do not pass grpc.InTapHandle in WithGRPCServerOptions") {
		t.Errorf("a second InTapHandle: %v", err)
	}
	if _, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(greetPolicy(t)), mesh.WithGRPCServerOptions(grpc.MaxRecvMsgSize(1<<20), nil)); err == nil ||
		err.Error() != "mesh: WithGRPCServerOptions: option 1 is nil" {
		t.Errorf("a nil grpc option: %v (it once panicked, and the recovered panic blamed InTapHandle)", err)
	}
}

// TestAllowStandardMethods: the helper's rule covers every health and
// reflection method both stacks serve, for the callers named only.
func TestAllowStandardMethods(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(mesh.AllowStandardMethods("spiffe://example.org/ns/ops/*"))
	if err != nil {
		t.Fatal(err)
	}
	ops, other := spiffeid.RequireFromString("spiffe://example.org/ns/ops/probe"), spiffeid.RequireFromString(friendID)
	for _, m := range mesh.GRPCStandardMethods() {
		if d := e.Decide(m, ops); d.Outcome != policy.Allowed || d.Rule != "mesh:standard-methods" {
			t.Errorf("%s for ops: %+v", m, d)
		}
		if d := e.Decide(m, other); d.Outcome != policy.Denied {
			t.Errorf("%s for another caller: %+v", m, d)
		}
	}
	if _, err := policy.Compile(mesh.AllowStandardMethods()); err == nil {
		t.Error("a rule with no callers compiled")
	}
}

// TestWithoutAuthorizationIsLogged: a server built WithoutAuthorization
// says so in its log when it starts serving, on both stacks, so that the
// option left in by mistake shows.
func TestWithoutAuthorizationIsLogged(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	creds := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	for _, stack := range []string{"grpc-go", "connect-go"} {
		var logs testsync.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		var addr string
		if stack == "grpc-go" {
			srv, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			addr = serve(t, srv.Serve)
		} else {
			srv, err := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			addr = serve(t, srv.Serve)
		}
		// Serving once a health check answers: the warning came before.
		check := grpcCheck
		if stack == "connect-go" {
			check = connectCheck
		}
		if err := check(t, addr, creds, greeterID); err != nil {
			t.Fatalf("%s: health: %v", stack, err)
		}
		if !strings.Contains(logs.String(), "mesh: serving without authorization (WithoutAuthorization): every peer of an accepted trust domain may call every method") {
			t.Errorf("%s: no warning in the log:\n%s", stack, logs.String())
		}
	}
}

// TestDryRunPolicyIsLogged: a server whose policy is in dry-run (every
// call allowed, denials only logged) says so in its log as it starts.
func TestDryRunPolicyIsLogged(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	e, err := policy.Compile(policy.Merge(policy.Policy{DryRun: true, Rules: []policy.Rule{
		{Name: "friend-greets", Effect: policy.Allow, From: []string{friendID}, To: []string{"/greet.v1.GreetService/Greet"}},
	}}, mesh.AllowStandardMethods(friendID)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e)
	if err != nil {
		t.Fatal(err)
	}
	var logs testsync.Buffer
	creds := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(a), mesh.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	if err := grpcCheck(t, addr, mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, greeterID); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "mesh: the policy is in dry-run (dry_run: true): denials are logged, not enforced; every call is allowed") {
		t.Errorf("no dry-run warning in the log:\n%s", logs.String())
	}
}

// TestUnusedDenyRuleStopsServe: a deny rule that names a method no served
// method matches (a typo, so a broader allow rule lets its callers
// through) stops Check and Serve, on both stacks, naming the rule; a deny
// rule that matches a served method does not. With WithCoverageWarnings it
// is logged instead, once for Check then Serve. A new user's deny rule with
// a misspelt service once went unnoticed, then was only a warning (none
// without WithLogger).
func TestUnusedDenyRuleStopsServe(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	creds := mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}
	p := policy.Merge(policy.Policy{Rules: []policy.Rule{
		{Name: "no-bob-typo", Effect: policy.Deny, From: []string{"spiffe://example.org/ns/app/sa/bob"}, To: []string{"/greet.v1.GreetServices/Greet"}},
		{Name: "no-eve", Effect: policy.Deny, From: []string{"spiffe://example.org/ns/app/sa/eve"}, To: []string{"/greet.v1.GreetService/Greet"}},
		{Name: "no-carol-elsewhere", Effect: policy.Deny, From: []string{"spiffe://example.org/ns/app/sa/carol"}, At: []string{"spiffe://example.org/ns/app/sa/other"}, To: []string{"/other.v1.OtherService/*"}},
		{Name: "app-greets", Effect: policy.Allow, From: []string{"spiffe://example.org/ns/app/*"}, To: []string{"/greet.v1.GreetService/*"}},
	}}, mesh.AllowStandardMethods(friendID))
	const wantErr = "mesh: the policy's deny rule(s) no-bob-typo match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for other servers says so with at:; WithCoverageWarnings only logs this)"
	const wantLog = `level=WARN msg="mesh: deny rules match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for another server says so with at:)" rules=[no-bob-typo]`
	for _, stack := range []string{"grpc-go", "connect-go"} {
		for _, warnOnly := range []bool{false, true} {
			var logs testsync.Buffer
			a := authorizerFor(t, p, policy.ForServer(spiffeid.RequireFromString(greeterID)))
			opts := []mesh.ServerOption{mesh.WithAuthorizer(a), mesh.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})))}
			if warnOnly {
				opts = append(opts, mesh.WithCoverageWarnings())
			}
			var check func() error
			var serveFn func(context.Context, net.Listener) error
			if stack == "grpc-go" {
				srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
				if err != nil {
					t.Fatal(err)
				}
				greetv1.RegisterGreetServiceServer(srv, greetv1.UnimplementedGreetServiceServer{})
				check, serveFn = srv.Check, srv.Serve
			} else {
				srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
				if err != nil {
					t.Fatal(err)
				}
				if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, greetv1connect.UnimplementedGreetServiceHandler{}); err != nil {
					t.Fatal(err)
				}
				check, serveFn = srv.Check, srv.Serve
			}
			if !warnOnly {
				if err := check(); err == nil || err.Error() != wantErr {
					t.Errorf("%s: Check = %v, want\n %s", stack, err, wantErr)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := serveFn(ctx, listen(t))
				cancel()
				if err == nil || err.Error() != wantErr {
					t.Errorf("%s: Serve = %v, want\n %s", stack, err, wantErr)
				}
				if strings.Contains(logs.String(), "match no method") {
					t.Errorf("%s: the refusal was logged as a warning too:\n%s", stack, logs.String())
				}
				continue
			}
			// Check, then Serve's own check of the same policy: one warning.
			if err := check(); err != nil {
				t.Fatalf("%s: Check with WithCoverageWarnings: %v", stack, err)
			}
			serve(t, serveFn)
			if got := logs.String(); strings.Count(got, wantLog+"\n") != 1 {
				t.Errorf("%s: want once in the log\n %s\nin:\n%s", stack, wantLog, got)
			}
		}
	}
}

// TestCoverageErrorsTogether: a policy with both an uncovered method and a
// deny rule that matches nothing is refused with both in one line, so that
// one restart fixes both.
func TestCoverageErrorsTogether(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	a := authorizerFor(t, policy.Policy{Rules: []policy.Rule{
		{Name: "no-bob-typo", Effect: policy.Deny, From: []string{"spiffe://example.org/ns/app/sa/bob"}, To: []string{"/greet.v1.GreetServices/Greet"}},
		{Name: "app-greets", Effect: policy.Allow, From: []string{"spiffe://example.org/ns/app/*"}, To: []string{"/greet.v1.GreetService/*"}},
	}})
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, mesh.WithAuthorizer(a), mesh.WithoutReflection())
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, greetv1.UnimplementedGreetServiceServer{})
	const want = "mesh: no allow rule covers 3 served method(s): /grpc.health.v1.Health/Check, /grpc.health.v1.Health/List, /grpc.health.v1.Health/Watch " +
		"(add allow rules for them to the policy or the protos' trustmesh.v1 access options, or pass WithCoverageWarnings to serve them to no one; health and reflection are covered by merging mesh.AllowStandardMethods(callers...) into the policy, and WithoutReflection serves no reflection); " +
		"mesh: the policy's deny rule(s) no-bob-typo match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for other servers says so with at:; WithCoverageWarnings only logs this)"
	if err := srv.Check(); err == nil || err.Error() != want {
		t.Errorf("Check = %v\nwant %s", err, want)
	}
}

// dropTime drops the time from slog's text lines, so that tests can
// compare them whole.
func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
