package identity_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/mesh"
)

// Verify applies the X.509-SVID rules to a peer's chain, as the mesh does
// at every handshake, and returns the Principal it proves.
func ExampleVerify() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	issued := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	ca, err := certs.NewCA(td, certs.WithNow(issued))
	if err != nil {
		fmt.Println(err)
		return
	}
	svid, err := ca.Issue(certs.IssueRequest{
		ID:  spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend"),
		TTL: time.Hour,
		Now: issued,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	p, err := identity.Verify(svid.Certificates, ca.Bundle(), identity.Client, issued.Add(time.Minute))
	fmt.Println(p, err)

	_, err = identity.Verify(svid.Certificates, ca.Bundle(), identity.Client, issued.Add(2*time.Hour))
	fmt.Println(err)

	other, err := certs.NewCA(td) // another CA for the same trust domain
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = identity.Verify(svid.Certificates, other.Bundle(), identity.Client, issued.Add(time.Minute))
	fmt.Println(err)
	// Output:
	// spiffe://example.org/ns/web/sa/frontend <nil>
	// identity: client certificate "spiffe://example.org/ns/web/sa/frontend": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time 2030-01-01T11:00:00Z is after 2030-01-01T10:00:00Z
	// identity: client certificate "spiffe://example.org/ns/web/sa/frontend": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "trustmesh development CA example.org")
}

// Handlers behind a mesh server find the caller's verified identity in the
// context, whichever stack (grpc-go or connect-go) served the call.
func ExampleFromContext() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca, err := certs.NewCA(td)
	if err != nil {
		fmt.Println(err)
		return
	}
	serverID := spiffeid.RequireFromString("spiffe://example.org/ns/greet/sa/greeter")
	srv, err := mesh.NewConnectServer(exampleCreds(ca, serverID), mesh.WithoutAuthorization())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, whoAmI{}); err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()

	caller := spiffeid.RequireFromString("spiffe://example.org/user/alice")
	hc, err := mesh.NewHTTPClient(exampleCreds(ca, caller), serverID)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hc.CloseIdleConnections()
	resp, err := greetv1connect.NewGreetServiceClient(hc, "https://"+ln.Addr().String()).
		Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Msg.GetGreeting())
	// Output:
	// Hello, spiffe://example.org/user/alice
}

// whoAmI greets the caller by the SPIFFE ID of its certificate.
type whoAmI struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (whoAmI) Greet(ctx context.Context, _ *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	p, ok := identity.FromContext(ctx)
	if !ok { // never behind a mesh server: no verified peer, no call
		return nil, connect.NewError(connect.CodeUnauthenticated, nil)
	}
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: "Hello, " + p.ID.String()}), nil
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
