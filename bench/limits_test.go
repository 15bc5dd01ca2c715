package bench_test

import (
	"context"
	"math"
	"net"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

const (
	greeterID = "spiffe://example.org/ns/app/sa/greeter"
	friendID  = "spiffe://example.org/ns/app/sa/friend"
)

type grpcGreeter struct {
	greetv1.UnimplementedGreetServiceServer
}

func (grpcGreeter) Greet(_ context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	return &greetv1.GreetResponse{Greeting: req.GetName()}, nil
}

type connectGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
}

func (connectGreeter) Greet(_ context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	return connect.NewResponse(&greetv1.GreetResponse{Greeting: req.Msg.GetName()}), nil
}

func greetAuthorizer(b *testing.B) *interceptors.Authorizer {
	b.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "friend-greets", Effect: policy.Allow, From: []string{friendID}, To: []string{"/greet.v1.GreetService/Greet"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkLimits measures what the connection and stream limits cost an
// allowed unary call over mTLS through the full chain (identity, rate
// limit, authorization), on both stacks: impl=limits is a server with its
// defaults (250 streams per connection, re-verification every 10s, the
// expiry watch and GOAWAY check of every connection), impl=unbounded the
// same server with the limits set as far off as they go.
func BenchmarkLimits(b *testing.B) {
	pki := testpki.New(b, "example.org")
	server := mesh.Credentials{SVID: pki.SVID(b, greeterID), Bundles: pki.Bundle()}
	client := mesh.Credentials{SVID: pki.SVID(b, friendID), Bundles: pki.Bundle()}
	impls := []struct {
		name string
		opts []mesh.ServerOption
	}{
		{"limits", nil},
		{"unbounded", []mesh.ServerOption{mesh.WithMaxConcurrentStreams(math.MaxUint32), mesh.WithRecheckInterval(24 * time.Hour)}},
	}
	for _, impl := range impls {
		limiter, err := interceptors.NewRateLimiter(1e9, 1e9)
		if err != nil {
			b.Fatal(err)
		}
		opts := append([]mesh.ServerOption{mesh.WithAuthorizer(greetAuthorizer(b)), mesh.WithCoverageWarnings(), mesh.WithRateLimiter(limiter)}, impl.opts...)
		b.Run("stack=grpc-go/impl="+impl.name, func(b *testing.B) {
			srv, err := mesh.NewGRPCServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				b.Fatal(err)
			}
			greetv1.RegisterGreetServiceServer(srv, grpcGreeter{})
			addr := serveBench(b, srv.Serve)
			conn, err := mesh.DialGRPC(addr, client, spiffeid.RequireFromString(greeterID))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := greetv1.NewGreetServiceClient(conn)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Greet(context.Background(), &greetv1.GreetRequest{Name: "x"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stack=connect-go/impl="+impl.name, func(b *testing.B) {
			srv, err := mesh.NewConnectServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				b.Fatal(err)
			}
			if err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, connectGreeter{}); err != nil {
				b.Fatal(err)
			}
			addr := serveBench(b, srv.Serve)
			hc, err := mesh.NewHTTPClient(client, spiffeid.RequireFromString(greeterID))
			if err != nil {
				b.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			c := greetv1connect.NewGreetServiceClient(hc, "https://"+addr, connect.WithGRPC())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{Name: "x"})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serveBench serves until the benchmark ends and returns the address.
func serveBench(b *testing.B, serve func(context.Context, net.Listener) error) string {
	b.Helper()
	ln := listen(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}
