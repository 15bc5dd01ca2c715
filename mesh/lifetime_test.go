package mesh_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// grpcGreeter is the grpc-go form of greeter.
type grpcGreeter struct {
	greetv1.UnimplementedGreetServiceServer
}

func (grpcGreeter) Greet(_ context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	return &greetv1.GreetResponse{Greeting: "hello " + req.GetName()}, nil
}

// greetStack serves the greet service on one stack (opts must choose
// authorization) and calls it with that
// stack's mesh client, over one connection kept for the client's life.
type greetStack struct {
	name  string
	serve func(t *testing.T, creds mesh.Credentials, opts ...mesh.ServerOption) string
	// client returns a function that greets over one long-lived
	// connection (grpc-go ClientConn, or one HTTP client).
	client func(t *testing.T, addr string, creds mesh.Credentials) func(context.Context) error
}

var greetStacks = []greetStack{
	{
		name: "grpc-go",
		serve: func(t *testing.T, creds mesh.Credentials, opts ...mesh.ServerOption) string {
			srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
			return serve(t, srv.Serve)
		},
		client: func(t *testing.T, addr string, creds mesh.Credentials) func(context.Context) error {
			conn, err := mesh.DialGRPC(addr, creds, spiffeid.RequireFromString(greeterID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			c := greetv1.NewGreetServiceClient(conn)
			return func(ctx context.Context) error {
				_, err := c.Greet(ctx, &greetv1.GreetRequest{Name: "x"})
				return err
			}
		},
	},
	{
		name: "connect-go",
		serve: func(t *testing.T, creds mesh.Credentials, opts ...mesh.ServerOption) string {
			srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{}); err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		},
		client: func(t *testing.T, addr string, creds mesh.Credentials) func(context.Context) error {
			hc, err := mesh.NewHTTPClient(creds, spiffeid.RequireFromString(greeterID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(hc.CloseIdleConnections)
			c := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, connect.WithGRPC())
			return func(ctx context.Context) error {
				_, err := c.Greet(ctx, connect.NewRequest(&greetv1.GreetRequest{Name: "x"}))
				return err
			}
		},
	},
}

// untilRefused calls greet every 100ms until a call fails, for at most
// limit, and returns that failure (nil if every call succeeded).
func untilRefused(greet func(context.Context) error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := greet(ctx)
		cancel()
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// TestConnectionEndsWithThePeersCertificate: a connection authorized with a
// short-lived SVID stops carrying calls once that SVID expires, on the
// server side (a client's SVID) and on the client side (a server's SVID),
// on both stacks. Before, the open connection kept working for as long as
// it stayed open.
func TestConnectionEndsWithThePeersCertificate(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	for _, st := range greetStacks {
		for _, side := range []string{"client-svid-expires", "server-svid-expires"} {
			t.Run(st.name+"/"+side, func(t *testing.T) {
				t.Parallel()
				pki := testpki.New(t, "example.org")
				serverSVID, clientSVID := pki.SVID(t, greeterID), pki.SVID(t, friendID)
				short := pki.SVID(t, friendID, testpki.WithTTL(ttl))
				if side == "client-svid-expires" {
					clientSVID = short
				} else {
					serverSVID = pki.SVID(t, greeterID, testpki.WithTTL(ttl))
					short = serverSVID
				}
				addr := st.serve(t, mesh.Credentials{SVID: serverSVID, Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
				greet := st.client(t, addr, mesh.Credentials{SVID: clientSVID, Bundles: pki.Bundle()})
				if err := greet(context.Background()); err != nil {
					t.Fatalf("first call: %v", err)
				}
				notAfter := short.Certificates[0].NotAfter
				err := untilRefused(greet, time.Until(notAfter)+5*time.Second)
				if err == nil {
					t.Fatalf("calls still succeed after the SVID expired at %s", notAfter.Format(time.RFC3339))
				}
				if now := time.Now(); now.Before(notAfter) {
					t.Fatalf("calls refused at %s, before the SVID expired at %s: %v", now, notAfter, err)
				}
			})
		}
	}
}

// TestConnectionEndsWhenThePeerNoLongerVerifies: once the server's bundle
// drops the CA that issued a connected client's SVID, the server closes
// that connection at its next re-check (and refuses the reconnection), on
// both stacks. Before, the connection kept working.
func TestConnectionEndsWhenThePeerNoLongerVerifies(t *testing.T) {
	t.Parallel()
	for _, st := range greetStacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "example.org")
			other := testpki.New(t, "example.org") // the client's CA, trusted next to the server's at first
			serverBundle := x509bundle.New(pki.TrustDomain())
			for _, b := range []*x509bundle.Bundle{pki.Bundle(), other.Bundle()} {
				for _, ca := range b.X509Authorities() {
					serverBundle.AddX509Authority(ca)
				}
			}
			addr := st.serve(t, mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: serverBundle},
				mesh.WithoutAuthorization(), mesh.WithRecheckInterval(50*time.Millisecond))
			greet := st.client(t, addr, mesh.Credentials{SVID: other.SVID(t, friendID), Bundles: pki.Bundle()})
			if err := greet(context.Background()); err != nil {
				t.Fatalf("first call: %v", err)
			}
			for _, ca := range other.Bundle().X509Authorities() {
				serverBundle.RemoveX509Authority(ca)
			}
			if err := untilRefused(greet, 5*time.Second); err == nil {
				t.Fatal("calls still succeed after the client's CA left the server's bundle")
			}
		})
	}
}

// TestStreamsPerConnectionAreBounded: a client cannot hold more calls open
// on one connection than WithMaxConcurrentStreams allows; the next waits
// (here until its deadline) instead of costing the server a goroutine.
func TestStreamsPerConnectionAreBounded(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	blocking := func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &greetv1.GreetResponse{}, nil
	}
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()},
		mesh.WithoutAuthorization(), mesh.WithMaxConcurrentStreams(2),
		mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{blocking}, nil))
	if err != nil {
		t.Fatal(err)
	}
	greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
	addr := serve(t, srv.Serve)
	defer close(release)
	conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := greetv1.NewGreetServiceClient(conn)
	for range 2 {
		go func() { _, _ = c.Greet(context.Background(), &greetv1.GreetRequest{}) }()
		<-started
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Greet(ctx, &greetv1.GreetRequest{})
	if len(started) != 0 {
		t.Fatalf("a third call started on a connection limited to two: %v", err)
	}
	if err == nil {
		t.Fatal("a third call succeeded on a connection limited to two")
	}
}

// TestMaxConcurrentStreamsOnConnect: the connect-go server advertises the
// limit in its HTTP/2 settings, which Go's client honours: with a limit of
// one, two concurrent calls on one connection run one after the other.
func TestMaxConcurrentStreamsOnConnect(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()},
		mesh.WithoutAuthorization(), mesh.WithMaxConcurrentStreams(1))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	slow := func(_ struct{}, opts ...connect.HandlerOption) (string, http.Handler) {
		h := connect.NewUnaryHandler("/greet.v1.GreetService/Greet",
			func(ctx context.Context, _ *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return connect.NewResponse(&greetv1.GreetResponse{}), nil
			}, opts...)
		return "/greet.v1.GreetService/", h
	}
	if err := mesh.Mount(srv, slow, struct{}{}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	defer close(release)
	hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
	if err != nil {
		t.Fatal(err)
	}
	// Honour the server's limit instead of dialling a second connection.
	hc.Transport.(*http.Transport).HTTP2 = &http.HTTP2Config{StrictMaxConcurrentRequests: true}
	defer hc.CloseIdleConnections()
	c := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, connect.WithGRPC())
	go func() { _, _ = c.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{})) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Greet(ctx, connect.NewRequest(&greetv1.GreetRequest{}))
	if len(started) != 0 || err == nil {
		t.Fatalf("a second call ran beside the first on a connection limited to one (err %v)", err)
	}
}
