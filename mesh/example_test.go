package mesh_test

import (
	"context"
	"fmt"
	"net"

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

// The identities of the examples: a greeter and its callers, all members of
// example.org.
var (
	exampleGreeterID = spiffeid.RequireFromString("spiffe://example.org/ns/greet/sa/greeter")
	frontendID       = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
	malloryID        = spiffeid.RequireFromString("spiffe://example.org/user/mallory")
)

// examplePolicy lets the frontend greet, and ops use health and reflection.
const examplePolicy = `
version: 1
rules:
  - name: frontend-greets
    effect: allow
    from: ["spiffe://example.org/ns/web/sa/frontend"]
    to: ["/greet.v1.GreetService/*"]
  - name: ops-health-and-reflection
    effect: allow
    from: ["spiffe://example.org/ns/ops/**"]
    to:
      - "/grpc.health.v1.Health/*"
      - "/grpc.reflection.v1.ServerReflection/*"
      - "/grpc.reflection.v1alpha.ServerReflection/*"
`

// examplePKI is a development CA for example.org (in production, SVIDs and
// bundles come from the Workload API: certs.NewWorkloadSource).
type examplePKI struct{ ca *certs.CA }

func newExamplePKI() (examplePKI, error) {
	ca, err := certs.NewCA(exampleGreeterID.TrustDomain())
	return examplePKI{ca}, err
}

// creds returns the credentials of the workload id.
func (p examplePKI) creds(id spiffeid.ID) (mesh.Credentials, error) {
	svid, err := p.ca.Issue(certs.IssueRequest{ID: id})
	return mesh.Credentials{SVID: svid, Bundles: p.ca.Bundle()}, err
}

// exampleAuthorizer compiles examplePolicy.
func exampleAuthorizer() (*interceptors.Authorizer, error) {
	file, err := policy.Parse("policy.yaml", []byte(examplePolicy))
	if err != nil {
		return nil, err
	}
	rules, err := policy.Compile(file)
	if err != nil {
		return nil, err
	}
	return interceptors.NewAuthorizer(rules)
}

// exampleGRPCGreeter implements greet.v1.GreetService for grpc-go.
type exampleGRPCGreeter struct {
	greetv1.UnimplementedGreetServiceServer
}

func (exampleGRPCGreeter) Greet(_ context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	return &greetv1.GreetResponse{Greeting: "Hello, " + req.GetName()}, nil
}

// exampleConnectGreeter implements greet.v1.GreetService for connect-go.
type exampleConnectGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (exampleConnectGreeter) Greet(_ context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "Hello, " + req.Msg.GetName()}), nil
}

// serveInBackground serves on 127.0.0.1 until the returned stop is called,
// which waits for serve to return.
func serveInBackground(serve func(context.Context, net.Listener) error) (addr string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	return ln.Addr().String(), func() error { cancel(); return <-done }, nil
}

// A grpc-go server of your own service and a client: the policy decides
// who may call each method (every method the server serves, health and
// reflection included, needs an allow rule); the client presents its SVID
// and accepts the server only by its SPIFFE ID.
func ExampleNewGRPCServer() {
	pki, err := newExamplePKI()
	if err != nil {
		fmt.Println(err)
		return
	}
	creds, err := pki.creds(exampleGreeterID)
	if err != nil {
		fmt.Println(err)
		return
	}
	file, err := policy.Parse("policy.yaml", []byte(examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	rules, err := policy.Compile(file)
	if err != nil {
		fmt.Println(err)
		return
	}
	authz, err := interceptors.NewAuthorizer(rules)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(authz))
	if err != nil {
		fmt.Println(err)
		return
	}
	greetv1.RegisterGreetServiceServer(srv, exampleGRPCGreeter{})

	// srv.ListenAndServe(ctx, ":8443") checks that the policy covers every
	// method, then serves until ctx ends. Here: on a free port of
	// 127.0.0.1, in the background.
	addr, stop, err := serveInBackground(srv.Serve)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	for _, caller := range []spiffeid.ID{frontendID, malloryID} {
		callerCreds, err := pki.creds(caller)
		if err != nil {
			fmt.Println(err)
			return
		}
		conn, err := mesh.DialGRPC(addr, callerCreds, exampleGreeterID)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp, err := greetv1.NewGreetServiceClient(conn).Greet(context.Background(), &greetv1.GreetRequest{Name: caller.String()})
		if err != nil {
			fmt.Printf("%v: %s\n", status.Code(err), status.Convert(err).Message())
		} else {
			fmt.Println(resp.GetGreeting())
		}
		conn.Close()
	}
	// Output:
	// Hello, spiffe://example.org/ns/web/sa/frontend
	// PermissionDenied: spiffe://example.org/user/mallory may not call /greet.v1.GreetService/Greet
}

// A connect-go server of your own service, on one port for Connect, gRPC
// and gRPC-Web, and a client of each protocol: every request is authorized
// before its message is read.
func ExampleNewConnectServer() {
	pki, err := newExamplePKI()
	if err != nil {
		fmt.Println(err)
		return
	}
	creds, err := pki.creds(exampleGreeterID)
	if err != nil {
		fmt.Println(err)
		return
	}
	authz, err := exampleAuthorizer() // as in ExampleNewGRPCServer
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewConnectServer(creds, mesh.WithAuthorizer(authz))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Mount takes the generated handler constructor and your implementation.
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, exampleConnectGreeter{}); err != nil {
		fmt.Println(err)
		return
	}
	addr, stop, err := serveInBackground(srv.Serve)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	for _, caller := range []spiffeid.ID{frontendID, malloryID} {
		callerCreds, err := pki.creds(caller)
		if err != nil {
			fmt.Println(err)
			return
		}
		hc, err := mesh.NewHTTPClient(callerCreds, exampleGreeterID)
		if err != nil {
			fmt.Println(err)
			return
		}
		// Connect by default; connect.WithGRPC() or connect.WithGRPCWeb() for the others.
		for _, protocol := range [][]connect.ClientOption{nil, {connect.WithGRPC()}, {connect.WithGRPCWeb()}} {
			client := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, protocol...)
			resp, err := client.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{Name: caller.String()}))
			if err != nil {
				fmt.Println(err)
			} else {
				fmt.Println(resp.Msg.GetGreeting())
			}
		}
		hc.CloseIdleConnections()
	}
	// Output:
	// Hello, spiffe://example.org/ns/web/sa/frontend
	// Hello, spiffe://example.org/ns/web/sa/frontend
	// Hello, spiffe://example.org/ns/web/sa/frontend
	// permission_denied: spiffe://example.org/user/mallory may not call /greet.v1.GreetService/Greet
	// permission_denied: spiffe://example.org/user/mallory may not call /greet.v1.GreetService/Greet
	// permission_denied: spiffe://example.org/user/mallory may not call /greet.v1.GreetService/Greet
}

// Check fails, before any port is opened, when the policy lets no one call
// some of the methods the server would serve: here health and reflection.
func ExampleGRPCServer_Check() {
	pki, err := newExamplePKI()
	if err != nil {
		fmt.Println(err)
		return
	}
	creds, err := pki.creds(exampleGreeterID)
	if err != nil {
		fmt.Println(err)
		return
	}
	rules, err := policy.Compile(policy.Policy{Rules: []policy.Rule{{
		Name: "frontend-greets", Effect: policy.Allow,
		From: []string{frontendID.String()}, To: []string{"/greet.v1.GreetService/*"},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	authz, err := interceptors.NewAuthorizer(rules)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(authz))
	if err != nil {
		fmt.Println(err)
		return
	}
	greetv1.RegisterGreetServiceServer(srv, exampleGRPCGreeter{})
	fmt.Println(srv.Check())
	// Output:
	// mesh: no allow rule covers 5 served method(s): /grpc.health.v1.Health/Check, /grpc.health.v1.Health/List, /grpc.health.v1.Health/Watch, /grpc.reflection.v1.ServerReflection/ServerReflectionInfo, /grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo (add allow rules for them to the policy or the protos' trustmesh.v1 access options, or pass WithCoverageWarnings to serve them to no one; health and reflection are covered by merging mesh.AllowStandardMethods(callers...) into the policy, and WithoutReflection serves no reflection)
}

// A server without reflection serves only its services and health, so
// its policy need not mention reflection.
func ExampleWithoutReflection() {
	pki, err := newExamplePKI()
	if err != nil {
		fmt.Println(err)
		return
	}
	creds, err := pki.creds(exampleGreeterID)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := mesh.NewConnectServer(creds, mesh.WithoutReflection(), mesh.WithoutAuthorization())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, exampleConnectGreeter{}); err != nil {
		fmt.Println(err)
		return
	}
	methods, err := srv.Methods()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range methods {
		fmt.Println(m)
	}
	// Output:
	// /greet.v1.GreetService/Count
	// /greet.v1.GreetService/Greet
	// /grpc.health.v1.Health/Check
	// /grpc.health.v1.Health/Watch
}
