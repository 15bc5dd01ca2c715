package interceptors_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

var (
	exampleServer   = spiffeid.RequireFromString("spiffe://example.org/ns/greet/sa/greeter")
	exampleFrontend = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
	exampleMallory  = spiffeid.RequireFromString("spiffe://example.org/user/mallory")
)

// An Authorizer decides every call with the policy in force (a compiled
// engine, or a policy.Watcher that reloads a file) and audits denials. The
// mesh servers run it before a request is decoded.
func ExampleNewAuthorizer() {
	rules, err := policy.Compile(policy.Policy{Rules: []policy.Rule{{
		Name:   "frontend-greets",
		Effect: policy.Allow,
		From:   []string{"spiffe://example.org/ns/web/sa/frontend"},
		To:     []string{"/greet.v1.GreetService/*", "/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	audit := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: withoutTime}))
	authz, err := interceptors.NewAuthorizer(rules, interceptors.WithAuditLogger(audit))
	if err != nil {
		fmt.Println(err)
		return
	}

	ca, err := certs.NewCA(exampleServer.TrustDomain())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewGRPCServer(exampleCreds(ca, exampleServer), mesh.WithAuthorizer(authz))
	if err != nil {
		fmt.Println(err)
		return
	}
	greetv1.RegisterGreetServiceServer(srv, exampleGreeter{})
	addr, stop, err := exampleServe(srv.Serve)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	for _, caller := range []spiffeid.ID{exampleFrontend, exampleMallory} {
		conn, err := mesh.DialGRPC(addr, exampleCreds(ca, caller), exampleServer)
		if err != nil {
			fmt.Println(err)
			return
		}
		_, err = greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{})
		fmt.Printf("%s: %v\n", caller.Path(), status.Code(err))
		conn.Close()
	}
	// Output:
	// /ns/web/sa/frontend: OK
	// level=WARN msg="authz decision" caller=spiffe://example.org/user/mallory method=/greet.v1.GreetService/Greet decision=deny rule=default-deny dry_run=false
	// /user/mallory: PermissionDenied
}

// A RateLimiter gives each caller SPIFFE ID its own token bucket: here
// bursts of two calls, refilled at one call every 100 seconds. Calls over
// the limit are refused with ResourceExhausted before their request is read.
func ExampleNewRateLimiter() {
	limiter, err := interceptors.NewRateLimiter(0.01, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	ca, err := certs.NewCA(exampleServer.TrustDomain())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewConnectServer(exampleCreds(ca, exampleServer),
		mesh.WithRateLimiter(limiter), mesh.WithoutAuthorization())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, exampleConnectGreeter{}); err != nil {
		fmt.Println(err)
		return
	}
	addr, stop, err := exampleServe(srv.Serve)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	hc, err := mesh.NewHTTPClient(exampleCreds(ca, exampleFrontend), exampleServer)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hc.CloseIdleConnections()
	client := greetv1connect.NewGreetServiceClient(hc, "https://"+addr)
	for range 3 {
		_, err := client.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{}))
		fmt.Println(err)
	}
	// Output:
	// <nil>
	// <nil>
	// resource_exhausted: spiffe://example.org/ns/web/sa/frontend is over its rate limit of 0.01 calls per second
}

// exampleCreds issues an SVID for id from ca (in production: the Workload
// API, certs.NewWorkloadSource).
func exampleCreds(ca *certs.CA, id spiffeid.ID) mesh.Credentials {
	svid, err := ca.Issue(certs.IssueRequest{ID: id})
	if err != nil {
		panic(err)
	}
	return mesh.Credentials{SVID: svid, Bundles: ca.Bundle()}
}

// exampleServe serves on 127.0.0.1 until stop is called, which waits for
// serve to return.
func exampleServe(serve func(context.Context, net.Listener) error) (addr string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	return ln.Addr().String(), func() error { cancel(); return <-done }, nil
}

// withoutTime drops the time from log lines, so that the output is stable.
func withoutTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

type exampleGreeter struct {
	greetv1.UnimplementedGreetServiceServer
}

func (exampleGreeter) Greet(context.Context, *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	return &greetv1.GreetResponse{Greeting: "Hello"}, nil
}

type exampleConnectGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (exampleConnectGreeter) Greet(context.Context, *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "Hello"}), nil
}
