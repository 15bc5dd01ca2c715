package bench_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/inventory"
)

const (
	inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
	gatewayID   = "spiffe://shop.example/ns/shop/sa/gateway"
	aliceID     = "spiffe://shop.example/user/alice"
)

// inventoryPolicy: the gateway may list products; nobody else may do anything.
func inventoryAuthorizer(b *testing.B) *interceptors.Authorizer {
	b.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-lists", Effect: policy.Allow, From: []string{gatewayID}, To: []string{"/shop.inventory.v1.InventoryService/ListProducts"}},
		{Name: "cover-the-rest", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/ops/sa/admin"}, To: []string{"*"}},
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

// serveInventory serves the real inventory service on a mesh grpc-go server
// built with opts, and returns a client connection as caller.
func serveInventory(b *testing.B, pki *testpki.PKI, caller string, opts ...mesh.GRPCServerOption) *grpc.ClientConn {
	b.Helper()
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(b, inventoryID), Bundles: pki.Bundle()}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	registerInventory(b, srv)
	ln := listen(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	conn, err := mesh.DialGRPC(ln.Addr().String(), mesh.Credentials{SVID: pki.SVID(b, caller), Bundles: pki.Bundle()},
		spiffeid.RequireFromString(inventoryID))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}

func registerInventory(b *testing.B, r grpc.ServiceRegistrar) {
	b.Helper()
	impl, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	inventoryv1.RegisterInventoryServiceServer(r, impl)
}

func listen(b *testing.B) net.Listener {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

// BenchmarkDeniedCall measures what a denied unary call with a 1 MiB request
// costs the server end to end, when authorization runs in grpc-go's
// InTapHandle (before the stream exists: the request is never decoded) and
// when it runs in a unary interceptor (after grpc-go read and decoded it).
func BenchmarkDeniedCall(b *testing.B) {
	pki := testpki.New(b, "shop.example")
	impls := []struct {
		name string
		opts func(a *interceptors.Authorizer) []mesh.GRPCServerOption
	}{
		{"tap", func(a *interceptors.Authorizer) []mesh.GRPCServerOption {
			return []mesh.GRPCServerOption{mesh.WithAuthorizer(a)}
		}},
		{"interceptor", func(a *interceptors.Authorizer) []mesh.GRPCServerOption {
			return []mesh.GRPCServerOption{mesh.WithoutAuthorization(),
				mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{a.UnaryServerInterceptor()}, nil)}
		}},
	}
	big := &inventoryv1.RestockRequest{ProductId: strings.Repeat("x", 1<<20), Quantity: 1}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			conn := serveInventory(b, pki, aliceID, impl.opts(inventoryAuthorizer(b))...)
			client := inventoryv1.NewInventoryServiceClient(conn)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Restock(context.Background(), big); status.Code(err) != codes.PermissionDenied {
					b.Fatalf("Restock as alice: %v, want PermissionDenied", err)
				}
			}
		})
	}
}

// BenchmarkChain compares a bare grpc-go server with mTLS and no
// interceptors with the full trustmesh chain (SVID verification, identity,
// authorization, tracing always on with batch export) on the same method, in
// one run. Run with -cpu to see throughput under parallel load.
func BenchmarkChain(b *testing.B) {
	pki := testpki.New(b, "shop.example")
	b.Run("impl=bare", func(b *testing.B) {
		client := inventoryv1.NewInventoryServiceClient(bareInventory(b, pki))
		runParallel(b, client)
	})
	b.Run("impl=full", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		conn := serveInventory(b, pki, gatewayID, mesh.WithAuthorizer(inventoryAuthorizer(b)),
			mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tp, Propagator: prop, TrustRemote: true}))
		runParallel(b, inventoryv1.NewInventoryServiceClient(conn))
	})
}

func runParallel(b *testing.B, client inventoryv1.InventoryServiceClient) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.ListProducts(context.Background(), &inventoryv1.ListProductsRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// bareInventory serves inventory on a plain grpc-go server: TLS 1.3 with
// client certificates verified by crypto/tls against the CA, nothing else.
func bareInventory(b *testing.B, pki *testpki.PKI) *grpc.ClientConn {
	b.Helper()
	roots := x509.NewCertPool()
	for _, c := range pki.Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	pair := func(s *x509svid.SVID) tls.Certificate {
		c := tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
		for _, cert := range s.Certificates {
			c.Certificate = append(c.Certificate, cert.Raw)
		}
		return c
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair(pki.SVID(b, inventoryID, testpki.WithDNSNames("localhost")))},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
	})))
	registerInventory(b, srv)
	ln := listen(b)
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(srv.Stop)
	svid := pki.SVID(b, gatewayID)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair(svid)}, RootCAs: roots, ServerName: "localhost",
	})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}
