package interceptors_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	otelcodes "go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/tokens"
)

const (
	placeOrder = "/shop.gateway.v2.StorefrontService/PlaceOrder"
	listV2     = "/shop.gateway.v2.StorefrontService/ListProducts"
	gatewayID  = "spiffe://shop.example/ns/shop/sa/gateway"
	aliceID    = "spiffe://shop.example/user/alice"
	bobID      = "spiffe://shop.example/user/bob"
)

// tokenPolicy lets users call the v2 storefront, PlaceOrder only with a
// token.
func tokenPolicy(t testing.TB) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-v2", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{"/shop.gateway.v2.StorefrontService/*"}},
		{Name: "orders-need-token", Effect: policy.Allow, RequireToken: true, From: []string{"spiffe://shop.example/user/*"}, To: []string{placeOrder}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// tokenFixture is a development issuer, its verifier and two users'
// certificates.
type tokenFixture struct {
	issuer     *tokens.Issuer
	verifier   *tokens.Verifier
	alice, bob *x509.Certificate
}

func newTokenFixture(t testing.TB) tokenFixture {
	t.Helper()
	key, err := tokens.InitDev(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := tokens.NewIssuer(tokens.DevIssuer, key.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewVerifier(tokens.Config{Issuer: tokens.DevIssuer, Audience: gatewayID, JWKSFile: key.JWKSFile})
	if err != nil {
		t.Fatal(err)
	}
	pki := testpki.New(t, "shop.example")
	return tokenFixture{issuer: iss, verifier: v,
		alice: pki.SVID(t, aliceID).Certificates[0], bob: pki.SVID(t, bobID).Certificates[0]}
}

func (f tokenFixture) token(t testing.TB, leaf *x509.Certificate, ttl time.Duration, now time.Time) string {
	t.Helper()
	raw, err := f.issuer.Issue(leaf, gatewayID, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tokenFor returns a token whose sub is subject, bound to leaf, valid for
// 15 minutes from now: what a confused or compromised issuer could mint.
func (f tokenFixture) tokenFor(t testing.TB, subject string, leaf *x509.Certificate, now time.Time) string {
	t.Helper()
	now = now.Truncate(time.Second)
	raw, err := f.issuer.Sign(tokens.Claims{Subject: subject, Audience: []string{gatewayID}, IssuedAt: now, NotBefore: now,
		Expiry: now.Add(15 * time.Minute), Thumbprint: tokens.Thumbprint(leaf)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// bindingOnly is a TokenVerifier such as a user might write: it checks the
// token's binding, but not its subject, and returns fixed claims.
type bindingOnly struct{ claims tokens.Claims }

func (v bindingOnly) Verify(_ string, leaf *x509.Certificate, _ time.Time) (tokens.Claims, error) {
	if leaf == nil || v.claims.Thumbprint != tokens.Thumbprint(leaf) {
		return tokens.Claims{}, errors.New("tokens: token is bound to another certificate")
	}
	return v.claims, nil
}

// TestTokenSubjectIsTheCaller: whatever the TokenVerifier, the authorizer
// refuses a token whose subject is not the caller's SPIFFE ID, in the tap
// and in the interceptor.
func TestTokenSubjectIsTheCaller(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	testCases := []struct {
		name    string
		subject string
		code    codes.Code
		msg     string
	}{
		{"alice", aliceID, codes.OK, ""},
		{"bob", bobID, codes.Unauthenticated, `invalid token: token is for subject "` + bobID + `", not the caller "` + aliceID + `"`},
		{"no subject", "", codes.Unauthenticated, `invalid token: token is for subject "", not the caller "` + aliceID + `"`},
		// A long subject is cut to 128 bytes for the client, before the
		// rune that crosses the limit, not in the middle of it.
		{"long subject cut on a rune boundary", strings.Repeat("s", 127) + "ésub", codes.Unauthenticated,
			`invalid token: token is for subject "` + strings.Repeat("s", 127) + `...", not the caller "` + aliceID + `"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := bindingOnly{tokens.Claims{Subject: tc.subject, Thumbprint: tokens.Thumbprint(f.alice)}}
			a, err := interceptors.NewAuthorizer(tokenPolicy(t), interceptors.WithTokenVerifier(v))
			if err != nil {
				t.Fatal(err)
			}
			md := metadata.Pairs("authorization", "Bearer any")
			_, err = a.TapHandle()(leafContext(f.alice), &tap.Info{FullMethodName: placeOrder, Header: md})
			wantStatus(t, err, tc.code, tc.msg)
			_, err = a.UnaryServerInterceptor()(metadata.NewIncomingContext(leafContext(f.alice), md), nil, &grpc.UnaryServerInfo{FullMethod: placeOrder},
				func(context.Context, any) (any, error) { return nil, nil })
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
}

// TestTokenForAnotherSubjectThroughTheMesh: over mutual TLS on loopback, on
// a connect-go and a grpc-go server, alice calling with a token minted for
// bob but bound to her own certificate gets Unauthenticated, whether the
// server's verifier is tokens.Verifier or one that checks only the binding;
// her own token passes.
func TestTokenForAnotherSubjectThroughTheMesh(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	f := newTokenFixture(t)
	aliceSVID := pki.SVID(t, aliceID)
	alice := mesh.Credentials{SVID: aliceSVID, Bundles: pki.Bundle()}
	aliceLeaf := aliceSVID.Certificates[0]
	bobsToken := f.tokenFor(t, bobID, aliceLeaf, time.Now())
	aliceToken := f.token(t, aliceLeaf, 15*time.Minute, time.Now())

	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-check-health-with-token", Effect: policy.Allow, RequireToken: true,
			From: []string{"spiffe://shop.example/user/*"}, To: []string{healthCheck}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	server := mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}
	serverID := spiffeid.RequireFromString(gatewayID)
	verifiers := []struct {
		name string
		v    interceptors.TokenVerifier
		msg  string
	}{
		{"tokens.Verifier", f.verifier, `invalid token: token is for subject "` + bobID + `", not the certificate's "` + aliceID + `"`},
		{"binding only", bindingOnly{tokens.Claims{Subject: bobID, Thumbprint: tokens.Thumbprint(aliceLeaf)}},
			`invalid token: token is for subject "` + bobID + `", not the caller "` + aliceID + `"`},
	}
	for _, vc := range verifiers {
		a, err := interceptors.NewAuthorizer(e, interceptors.WithTokenVerifier(vc.v))
		if err != nil {
			t.Fatal(err)
		}
		opts := []mesh.ServerOption{mesh.WithAuthorizer(a), mesh.WithCoverageWarnings()}
		t.Run(vc.name+"/connect-go", func(t *testing.T) {
			t.Parallel()
			srv, err := mesh.NewConnectServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveOn(t, srv.Serve)
			hc, err := mesh.NewHTTPClient(alice, serverID)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(hc.CloseIdleConnections)
			client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, "https://"+addr+healthCheck)
			call := func(token string) error {
				req := connect.NewRequest(&healthpb.HealthCheckRequest{})
				req.Header().Set("Authorization", "Bearer "+token)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := client.CallUnary(ctx, req)
				return err
			}
			if vc.name == "tokens.Verifier" {
				if err := call(aliceToken); err != nil {
					t.Fatalf("alice with her own token: %v", err)
				}
			}
			err = call(bobsToken)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated || ce.Message() != vc.msg {
				t.Errorf("alice with bob's token: %v, want unauthenticated %q", err, vc.msg)
			}
		})
		t.Run(vc.name+"/grpc-go", func(t *testing.T) {
			t.Parallel()
			srv, err := mesh.NewGRPCServer(server, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveOn(t, srv.Serve)
			conn, err := mesh.DialGRPC(addr, alice, serverID)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			call := func(token string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
				_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			}
			if vc.name == "tokens.Verifier" {
				if err := call(aliceToken); err != nil {
					t.Fatalf("alice with her own token: %v", err)
				}
			}
			wantStatus(t, call(bobsToken), codes.Unauthenticated, vc.msg)
		})
	}
}

// leafContext is a grpc-go call context from the holder of leaf.
func leafContext(leaf *x509.Certificate) context.Context {
	id := spiffeid.RequireFromURI(leaf.URIs[0])
	return interceptors.VerifiedPeerContext(identity.Principal{ID: id, Leaf: leaf})
}

func TestNewAuthorizerNeedsTokenVerifier(t *testing.T) {
	t.Parallel()
	_, err := interceptors.NewAuthorizer(tokenPolicy(t))
	want := "interceptors: policy rule orders-need-token requires an access token, but no token verifier is configured (WithTokenVerifier)"
	if err == nil || err.Error() != want {
		t.Fatalf("NewAuthorizer error = %v, want %s", err, want)
	}
	if _, err := interceptors.NewAuthorizer(tokenPolicy(t), interceptors.WithTokenVerifier(newTokenFixture(t).verifier)); err != nil {
		t.Fatalf("NewAuthorizer with a verifier: %v", err)
	}
}

// TestTokenWithoutVerifier: a policy source whose later engine requires
// tokens (a hot reload) cannot make the authorizer let such calls through.
func TestTokenWithoutVerifier(t *testing.T) {
	t.Parallel()
	src := &switchSource{}
	src.e = newAuthorizerPolicy(t)
	a, err := interceptors.NewAuthorizer(src)
	if err != nil {
		t.Fatal(err)
	}
	src.e = tokenPolicy(t)
	f := newTokenFixture(t)
	header := metadata.Pairs("authorization", "Bearer "+f.token(t, f.alice, time.Minute, time.Now()))
	_, err = a.TapHandle()(leafContext(f.alice), &tap.Info{FullMethodName: placeOrder, Header: header})
	wantStatus(t, err, codes.Unauthenticated, "token required for "+placeOrder+", but this server verifies no tokens")
}

type switchSource struct{ e *policy.Engine }

func (s *switchSource) Engine() *policy.Engine { return s.e }

func newAuthorizerPolicy(t testing.TB) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users-v2", Effect: policy.Allow, From: []string{"spiffe://shop.example/user/*"}, To: []string{"/shop.gateway.v2.StorefrontService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantStatus(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || st.Message() != msg {
		t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	var audit bytes.Buffer
	a, err := interceptors.NewAuthorizer(tokenPolicy(t), interceptors.WithTokenVerifier(f.verifier),
		interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&audit, nil))))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	aliceToken := f.token(t, f.alice, 15*time.Minute, now)
	testCases := []struct {
		name   string
		leaf   *x509.Certificate
		method string
		header []string // authorization values
		code   codes.Code
		msg    string
	}{
		{"good token", f.alice, placeOrder, []string{"Bearer " + aliceToken}, codes.OK, ""},
		{"scheme in any case", f.alice, placeOrder, []string{"bearer " + aliceToken}, codes.OK, ""},
		{"no token needed", f.bob, listV2, nil, codes.OK, ""},
		{"missing", f.alice, placeOrder, nil, codes.Unauthenticated, "token required for " + placeOrder},
		{"empty bearer", f.alice, placeOrder, []string{"Bearer "}, codes.Unauthenticated, "token required for " + placeOrder},
		{"replayed with another certificate", f.bob, placeOrder, []string{"Bearer " + aliceToken}, codes.Unauthenticated, "invalid token: token is bound to another certificate"},
		{"minted for bob, bound to alice's certificate", f.alice, placeOrder, []string{"Bearer " + f.tokenFor(t, bobID, f.alice, now)}, codes.Unauthenticated,
			`invalid token: token is for subject "` + bobID + `", not the certificate's "` + aliceID + `"`},
		{"expired", f.alice, placeOrder, []string{"Bearer " + f.token(t, f.alice, time.Minute, now.Add(-time.Hour))}, codes.Unauthenticated,
			"invalid token: token expired at " + now.Add(-59*time.Minute).UTC().Truncate(time.Second).Format(time.RFC3339)},
		{"not a bearer token", f.alice, placeOrder, []string{"Basic YWxpY2U6cHc="}, codes.Unauthenticated, `invalid token: authorization header is not "Bearer TOKEN"`},
		{"two tokens", f.alice, placeOrder, []string{"Bearer " + aliceToken, "Bearer " + aliceToken}, codes.Unauthenticated, "invalid token: more than one authorization header"},
		{"garbage", f.alice, placeOrder, []string{"Bearer nope"}, codes.Unauthenticated, "invalid token: malformed token: compact JWS format must have three parts"},
	}
	tapFn, unary := a.TapHandle(), a.UnaryServerInterceptor()
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			md := metadata.MD{}
			for _, v := range tc.header {
				md.Append("authorization", v)
			}
			// The tap reads the headers from tap.Info.
			ctx, err := tapFn(leafContext(tc.leaf), &tap.Info{FullMethodName: tc.method, Header: md})
			wantStatus(t, err, tc.code, tc.msg)
			if err == nil && tc.method == placeOrder {
				if c, ok := tokens.FromContext(ctx); !ok || c.Subject != aliceID {
					t.Errorf("tap context claims = %+v, %v; want alice's", c, ok)
				}
			}
			// The interceptor reads them from the incoming metadata.
			var seen context.Context
			_, err = unary(metadata.NewIncomingContext(leafContext(tc.leaf), md), nil, &grpc.UnaryServerInfo{FullMethod: tc.method},
				func(ctx context.Context, _ any) (any, error) { seen = ctx; return nil, nil })
			wantStatus(t, err, tc.code, tc.msg)
			if err == nil && tc.method == placeOrder {
				if c, ok := tokens.FromContext(seen); !ok || c.Subject != aliceID {
					t.Errorf("handler context claims = %+v, %v; want alice's", c, ok)
				}
			}
		})
	}
	log := audit.String()
	for _, part := range []string{`msg="authz token refused"`, "caller=" + bobID, "method=" + placeOrder, "decision=allow", "rule=orders-need-token",
		`error="invalid token: token is bound to another certificate"`} {
		if !strings.Contains(log, part) {
			t.Errorf("audit log lacks %q:\n%s", part, log)
		}
	}
}

// TestTokenPolicyAllocatesNothing: with token rules in the policy, a call
// that needs no token still costs no allocation.
func TestTokenPolicyAllocatesNothing(t *testing.T) {
	f := newTokenFixture(t)
	a, err := interceptors.NewAuthorizer(tokenPolicy(t), interceptors.WithTokenVerifier(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	tapFn := a.TapHandle()
	ctx := leafContext(f.bob)
	info := &tap.Info{FullMethodName: listV2, Header: metadata.MD{}}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := tapFn(ctx, info); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("TapHandle allow without token: %v allocs per call, want 0", n)
	}
}

// TestTokenRefusalTraced: with telemetry on, a call refused for its token
// gets a server span of its own with the reason as its error status.
func TestTokenRefusalTraced(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	a, err := interceptors.NewAuthorizer(tokenPolicy(t), interceptors.WithTokenVerifier(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	a, err = a.WithTelemetry(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)), metricnoop.NewMeterProvider(), propagation.TraceContext{}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.TapHandle()(leafContext(f.alice), &tap.Info{FullMethodName: placeOrder, Header: metadata.MD{}})
	wantStatus(t, err, codes.Unauthenticated, "token required for "+placeOrder)
	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Status().Code != otelcodes.Error || ended[0].Status().Description != "token required for "+placeOrder {
		t.Fatalf("spans = %+v, want one with the refusal as its status", ended)
	}
	// A good token proceeds.
	header := metadata.Pairs("authorization", "Bearer "+f.token(t, f.alice, time.Minute, time.Now()))
	ctx, err := a.TapHandle()(leafContext(f.alice), &tap.Info{FullMethodName: placeOrder, Header: header})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tokens.FromContext(ctx); !ok {
		t.Error("no claims in the context of an allowed call")
	}
}
