package interceptors_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/policy"
)

// claimingInfo is an AuthInfo of a user's own making that claims a
// Principal, as the PrincipalAuthInfo interface once let any credentials
// do: it must not be believed.
type claimingInfo struct {
	credentials.TLSInfo
	p identity.Principal
}

func (v claimingInfo) Principal() identity.Principal { return v.p }

func callerContext(id string) context.Context {
	return interceptors.VerifiedPeerContext(identity.Principal{ID: spiffeid.RequireFromString(id)})
}

// unverifiedTLSContext is the peer of a plain grpc-go TLS connection that
// presented the gateway's certificate from a CA nobody trusts.
func unverifiedTLSContext(t *testing.T) context.Context {
	t.Helper()
	rogue := testpki.New(t, "shop.example").SVID(t, "spiffe://shop.example/ns/shop/sa/gateway")
	info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: rogue.Certificates}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
}

func newAuthorizer(t *testing.T) *interceptors.Authorizer {
	t.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-calls-orders", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/shop/sa/gateway"}, To: []string{"/shop.orders.v1.OrderService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAllowPathAllocatesNothing checks the rule that the authorization hot
// path allocates nothing, through the adapters the mesh uses.
func TestAllowPathAllocatesNothing(t *testing.T) {
	a := newAuthorizer(t)
	ctx := callerContext("spiffe://shop.example/ns/shop/sa/gateway")
	tapFn := a.TapHandle()
	info := &tap.Info{FullMethodName: "/shop.orders.v1.OrderService/CreateOrder"}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := tapFn(ctx, info); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("TapHandle allow: %v allocs per call, want 0", n)
	}
	unary := a.UnaryServerInterceptor()
	sinfo := &grpc.UnaryServerInfo{FullMethod: "/shop.orders.v1.OrderService/CreateOrder"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := unary(ctx, nil, sinfo, handler); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("UnaryServerInterceptor allow: %v allocs per call, want 0", n)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t)
	tapFn := a.TapHandle()
	testCases := []struct {
		name    string
		ctx     context.Context
		method  string
		code    codes.Code
		message string
	}{
		{"denied", callerContext("spiffe://shop.example/user/alice"), "/shop.orders.v1.OrderService/CreateOrder",
			codes.PermissionDenied, "spiffe://shop.example/user/alice may not call /shop.orders.v1.OrderService/CreateOrder"},
		// An unknown method of an unknown service matches no rule. (One in a
		// service the caller may call with /pkg.Svc/* passes the policy and
		// is then refused by the server as Unimplemented.)
		{"unknown-service", callerContext("spiffe://shop.example/ns/shop/sa/gateway"), "/shop.nope.v1.NopeService/Nope",
			codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/gateway may not call /shop.nope.v1.NopeService/Nope"},
		{"no-peer", context.Background(), "/shop.orders.v1.OrderService/CreateOrder",
			codes.Unauthenticated, "interceptors: no verified peer certificate on this connection"},
		{"plain-tls-without-certificate", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}}), "/shop.orders.v1.OrderService/CreateOrder",
			codes.Unauthenticated, "interceptors: no verified peer certificate on this connection"},
		// grpc-go's own TLS credentials behind RequireAnyClientCert: a
		// certificate nobody verified is no identity.
		{"plain-tls-unverified-certificate", unverifiedTLSContext(t), "/shop.orders.v1.OrderService/CreateOrder",
			codes.Unauthenticated, "interceptors: no verified peer certificate on this connection"},
		{"self-made-auth-info", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: claimingInfo{p: identity.Principal{ID: spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/gateway")}}}), "/shop.orders.v1.OrderService/CreateOrder",
			codes.Unauthenticated, "interceptors: no verified peer certificate on this connection"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tapFn(tc.ctx, &tap.Info{FullMethodName: tc.method})
			st := status.Convert(err)
			if st.Code() != tc.code || st.Message() != tc.message {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.message)
			}
		})
	}
}

// TestAuthorizerOptionErrors: an option given a value it cannot use is an
// error from NewAuthorizer, not a silent default.
func TestAuthorizerOptionErrors(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	const want = "interceptors: WithAuditLogger(nil): pass a logger (slog.New(slog.DiscardHandler) to audit nothing)"
	if _, err := interceptors.NewAuthorizer(e, interceptors.WithAuditLogger(nil)); err == nil || err.Error() != want {
		t.Errorf("NewAuthorizer: %v, want %s", err, want)
	}
	if _, err := interceptors.NewAuthorizer(e, nil); err == nil || err.Error() != "interceptors: NewAuthorizer: nil option" {
		t.Errorf("nil option: %v", err)
	}
}

// TestIdentityPathAllocatesOnlyTheContext: the identity interceptor puts
// the connection's Principal in the call's context by pointer (one
// allocation, the context), and the handler reads the verified peer (before,
// the Principal was boxed in the context and the connection's AuthInfo,
// TLS state included, copied out of its interface on every read).
func TestIdentityPathAllocatesOnlyTheContext(t *testing.T) {
	const id = "spiffe://shop.example/ns/shop/sa/gateway"
	ctx := callerContext(id)
	unary := interceptors.UnaryServerIdentity()
	var seen string
	handler := func(ctx context.Context, _ any) (any, error) {
		p, ok := identity.FromContext(ctx)
		if ok {
			seen = p.ID.String()
		}
		return nil, nil
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := unary(ctx, nil, &grpc.UnaryServerInfo{}, handler); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("UnaryServerIdentity: %v allocs per call, want 1 (the context)", n)
	}
	if seen != id {
		t.Errorf("handler saw caller %q, want %q", seen, id)
	}
}
