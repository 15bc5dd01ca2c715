package bench_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	greetv1 "github.com/trustmesh/trustmesh/gen/greet/v1"
	"github.com/trustmesh/trustmesh/gen/greet/v1/greetv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

const (
	benchEdgeID = "spiffe://example.org/ns/app/sa/edge"
	benchUserID = "spiffe://example.org/user/alice"
)

// relayGreeter greets the backend in the context of the call it serves.
type relayGreeter struct {
	greetv1connect.UnimplementedGreetServiceHandler
	backend greetv1.GreetServiceClient
}

func (r relayGreeter) Greet(ctx context.Context, req *connect.Request[greetv1.GreetRequest]) (*connect.Response[greetv1.GreetResponse], error) {
	resp, err := r.backend.Greet(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// BenchmarkTxnChain measures a two-hop call, a person through a connect-go
// edge to a grpc-go backend over mTLS, with transaction tokens
// (impl=txn: the edge mints one per call, the backend verifies it — a
// cache hit after the first — and decides on its subject) against the
// same chain without (impl=plain: the backend decides on the edge alone).
func BenchmarkTxnChain(b *testing.B) {
	for _, withTxn := range []bool{false, true} {
		name := "plain"
		if withTxn {
			name = "txn"
		}
		b.Run("impl="+name, func(b *testing.B) {
			pki := testpki.New(b, "example.org")
			rule := policy.Rule{Name: "edge-greets", Effect: policy.Allow, From: []string{benchEdgeID}, To: []string{"/greet.v1.GreetService/Greet"}}
			var backendOpts []interceptors.AuthorizerOption
			p := policy.Policy{}
			if withTxn {
				rule.Subject = []string{"spiffe://example.org/user/*"}
				p.TxnIssuers = []string{benchEdgeID}
				backendOpts = append(backendOpts, interceptors.WithTransactionTokens(pki.Bundle(), pki.TrustDomain()))
			}
			p.Rules = []policy.Rule{rule}
			be, err := policy.Compile(p)
			if err != nil {
				b.Fatal(err)
			}
			backendAuthz, err := interceptors.NewAuthorizer(be, backendOpts...)
			if err != nil {
				b.Fatal(err)
			}
			backend, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(b, greeterID), Bundles: pki.Bundle()},
				mesh.WithAuthorizer(backendAuthz), mesh.WithCoverageWarnings())
			if err != nil {
				b.Fatal(err)
			}
			greetv1.RegisterGreetServiceServer(backend, grpcGreeter{})
			backendAddr := serveBench(b, backend.Serve)

			edgeCreds := mesh.Credentials{SVID: pki.SVID(b, benchEdgeID), Bundles: pki.Bundle()}
			conn, err := mesh.DialGRPC(backendAddr, edgeCreds, spiffeid.RequireFromString(greeterID))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			var edgeOpts []interceptors.AuthorizerOption
			if withTxn {
				minter, err := txn.NewMinter(edgeCreds.SVID, pki.TrustDomain())
				if err != nil {
					b.Fatal(err)
				}
				edgeOpts = append(edgeOpts, interceptors.WithTxnMinter(minter))
			}
			ee, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
				{Name: "users-greet", Effect: policy.Allow, From: []string{"spiffe://example.org/user/*"}, To: []string{"/greet.v1.GreetService/Greet"}},
			}})
			if err != nil {
				b.Fatal(err)
			}
			edgeAuthz, err := interceptors.NewAuthorizer(ee, edgeOpts...)
			if err != nil {
				b.Fatal(err)
			}
			edge, err := mesh.NewConnectServer(edgeCreds, mesh.WithAuthorizer(edgeAuthz), mesh.WithCoverageWarnings())
			if err != nil {
				b.Fatal(err)
			}
			if err := mesh.Mount(edge, greetv1connect.NewGreetServiceHandler, relayGreeter{backend: greetv1.NewGreetServiceClient(conn)}); err != nil {
				b.Fatal(err)
			}
			edgeAddr := serveBench(b, edge.Serve)
			hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(b, benchUserID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(benchEdgeID))
			if err != nil {
				b.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			client := greetv1connect.NewGreetServiceClient(hc, "https://"+edgeAddr, connect.WithGRPC())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Greet(context.Background(), connect.NewRequest(&greetv1.GreetRequest{Name: "x"})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
