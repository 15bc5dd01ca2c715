package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

const (
	benchCaller = "spiffe://shop.example/ns/shop/sa/gateway"
	benchServer = "spiffe://shop.example/ns/shop/sa/orders"
	benchMethod = "/bench.v1.BenchService/Target"
)

// benchRules returns n allow rules for distinct callers and methods; only
// the last matches the benchmark's call (the worst case for a linear scan).
func benchRules(n int) []policy.Rule {
	rules := make([]policy.Rule, 0, n)
	for i := range n - 1 {
		rules = append(rules, policy.Rule{
			Name: fmt.Sprintf("r%d", i), Effect: policy.Allow,
			From: []string{fmt.Sprintf("spiffe://shop.example/ns/shop/sa/svc%d", i)},
			To:   []string{fmt.Sprintf("/bench.v1.BenchService/M%d", i)},
		})
	}
	return append(rules, policy.Rule{Name: fmt.Sprintf("r%d", n-1), Effect: policy.Allow, From: []string{benchCaller}, To: []string{benchMethod}})
}

// grpcAuthz returns grpc-go's authz interceptor for benchRules(n), in its
// JSON policy form.
func grpcAuthz(b *testing.B, n int) grpc.UnaryServerInterceptor {
	b.Helper()
	type rule struct {
		Name   string `json:"name"`
		Source struct {
			Principals []string `json:"principals"`
		} `json:"source"`
		Request struct {
			Paths []string `json:"paths"`
		} `json:"request"`
	}
	doc := struct {
		Name       string `json:"name"`
		AllowRules []rule `json:"allow_rules"`
	}{Name: "bench"}
	for _, r := range benchRules(n) {
		var jr rule
		jr.Name, jr.Source.Principals, jr.Request.Paths = r.Name, r.From, r.To
		doc.AllowRules = append(doc.AllowRules, jr)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	i, err := authz.NewStatic(string(data))
	if err != nil {
		b.Fatal(err)
	}
	return i.UnaryInterceptor
}

// trustmesh returns our authorization interceptor for benchRules(n).
func trustmesh(b *testing.B, n int) grpc.UnaryServerInterceptor {
	b.Helper()
	e, err := policy.Compile(policy.Policy{Rules: benchRules(n)})
	if err != nil {
		b.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e)
	if err != nil {
		b.Fatal(err)
	}
	return a.UnaryServerInterceptor()
}

// serverCallContext makes one real call over mutual TLS to a trustmesh
// grpc-go server and returns the context the server gave that call: both
// interceptors see exactly what they would see in production (the peer, its
// certificates, grpc-go's connection, the mesh's AuthInfo).
func serverCallContext(b *testing.B) context.Context {
	b.Helper()
	pki := testpki.New(b, "shop.example")
	calls := make(chan context.Context, 1)
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(b, benchServer), Bundles: pki.Bundle()},
		mesh.WithoutAuthorization(),
		mesh.WithGRPCServerOptions(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			select {
			case calls <- stream.Context():
			default:
			}
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return stream.SendMsg(&emptypb.Empty{})
		})))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })

	conn, err := mesh.DialGRPC(ln.Addr().String(), mesh.Credentials{SVID: pki.SVID(b, benchCaller), Bundles: pki.Bundle()},
		spiffeid.RequireFromString(benchServer))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	if err := conn.Invoke(b.Context(), benchMethod, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		b.Fatalf("call %s: %v", benchMethod, err)
	}
	return <-calls
}

// BenchmarkAuthorize compares the authorization interceptors, side by side,
// on equivalent policies of 10 and 1,000 rules, with the same server call
// context. Compare with: benchstat -col /impl.
func BenchmarkAuthorize(b *testing.B) {
	ctx := serverCallContext(b)
	// grpc-go authz reads the peer's certificates from a plain
	// credentials.TLSInfo; the mesh's AuthInfo embeds one (and adds the
	// Principal parsed at the handshake), so give authz the embedded value.
	p, _ := peer.FromContext(ctx)
	tlsInfo, ok := p.AuthInfo.(interface{ GetTLSInfo() credentials.TLSInfo })
	if !ok {
		b.Fatalf("peer AuthInfo %T carries no TLS info", p.AuthInfo)
	}
	plain := *p
	plain.AuthInfo = tlsInfo.GetTLSInfo()
	plainCtx := peer.NewContext(ctx, &plain)
	info := &grpc.UnaryServerInfo{FullMethod: benchMethod}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, n := range []int{10, 1000} {
		impls := []struct {
			name string
			ctx  context.Context
			i    grpc.UnaryServerInterceptor
		}{
			{"trustmesh", ctx, trustmesh(b, n)},
			{"grpcauthz", plainCtx, grpcAuthz(b, n)},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("impl=%s/rules=%d", impl.name, n), func(b *testing.B) {
				if _, err := impl.i(impl.ctx, nil, info, handler); err != nil {
					b.Fatalf("the benchmark call was refused: %v", err)
				}
				b.ReportAllocs()
				for b.Loop() {
					_, _ = impl.i(impl.ctx, nil, info, handler)
				}
			})
		}
	}
}
