package mesh_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

// The security matrix of SECURITY.md: every way a peer can fail to prove a
// mesh identity, against a grpc-go and a connect-go mesh server, each with
// what the client sees and the one line the server logs. Each case gets its
// own servers, so the log it asserts is its own.

// securityStack is one kind of mesh server.
type securityStack struct {
	name  string
	start func(t *testing.T, creds mesh.Credentials, log *slog.Logger) string
	// logPrefix starts the server's log message of a refused handshake.
	logPrefix string
}

var securityStacks = []securityStack{
	{"grpc-go", func(t *testing.T, creds mesh.Credentials, log *slog.Logger) string {
		srv, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, srv.Serve)
	}, `msg="mesh: refused connection: TLS handshake failed" remote=127.0.0.1:`},
	{"connect-go", func(t *testing.T, creds mesh.Credentials, log *slog.Logger) string {
		srv, err := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, srv.Serve)
	}, `msg="http: TLS handshake error from 127.0.0.1:`},
}

// clientWant is what one client sees of a refused call: its code and a part
// of its error message.
type clientWant struct {
	code codes.Code
	msg  string
}

// refusedWith is what each client may see when the server refuses its
// certificate with a TLS alert. With TLS 1.3 the client's side of the
// handshake is complete before the server has checked the client's
// certificate, so the client learns of the refusal on its next read (the
// alert) or write (the connection the server already closed), whichever
// comes first: a genuine race. grpc-go reports Unavailable either way;
// connect-go reports Unavailable for the alert but Canceled for a reset or
// broken pipe (its isClientDisconnected mapping, meant for servers).
func refusedWith(alert string) map[string][]clientWant {
	return map[string][]clientWant{
		"grpc-go": {
			{codes.Unavailable, "remote error: tls: " + alert},
			{codes.Unavailable, "broken pipe"},
			{codes.Unavailable, "connection reset by peer"},
		},
		"connect-go": {
			{codes.Unavailable, "remote error: tls: " + alert},
			{codes.Unavailable, "http2: client conn could not be established"},
			{codes.Canceled, "broken pipe"},
			{codes.Canceled, "connection reset by peer"},
		},
	}
}

// wantOneOf checks that err matches one of wants.
func wantOneOf(t *testing.T, who string, err error, wants []clientWant) {
	t.Helper()
	for _, w := range wants {
		if codeOf(err) == w.code && strings.Contains(errString(err), w.msg) {
			return
		}
	}
	t.Errorf("%s: got %v %q, want one of %v", who, codeOf(err), errString(err), wants)
}

// TestSecurityMatrixClientCertificates presents every kind of bad client
// material to both stacks, with a grpc-go and a connect-go client whose TLS
// configuration is a mesh client's with only the certificate (or version)
// changed.
func TestSecurityMatrixClientCertificates(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	foreign := testpki.New(t, "shop.example") // another CA for the same trust domain
	partner := testpki.New(t, "partner.example")
	unknown := testpki.New(t, "unknown.example")
	// The server verifies partner.example chains (it holds the bundle) but
	// accepts only its own trust domain; unknown.example has no bundle.
	serverCreds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: x509bundle.NewSet(pki.Bundle(), partner.Bundle())}

	leaf := func(p *testpki.PKI, mutate func(*x509.Certificate)) func(*testing.T) *tls.Certificate {
		return func(t *testing.T) *tls.Certificate {
			cert, key := p.Leaf(t, mutate)
			return tlsCert(key, cert)
		}
	}
	svid := func(p *testpki.PKI, id string) func(*testing.T) *tls.Certificate {
		return func(t *testing.T) *tls.Certificate {
			s := p.SVID(t, id)
			return tlsCert(s.PrivateKey, s.Certificates...)
		}
	}
	const (
		leafID = `\"spiffe://shop.example/test/leaf\"`  // as the text log quotes it
		serial = "identity: client certificate serial " // a leaf without a readable ID is named by its serial
	)
	testCases := []struct {
		name string
		// cert is the client's certificate; nil presents none.
		cert func(*testing.T) *tls.Certificate
		// tweak adjusts the client's TLS configuration.
		tweak func(*tls.Config)
		// want maps each client to what it may see (see refusedWith).
		want map[string][]clientWant
		// reason holds the parts of the server's log line that say why.
		reason []string
	}{
		{
			name:   "no-client-certificate",
			want:   refusedWith("certificate required"),
			reason: []string{"tls: client didn't provide a certificate"},
		},
		{
			name:   "certificate-from-another-ca",
			cert:   svid(foreign, clientID),
			want:   refusedWith("bad certificate"),
			reason: []string{`identity: client certificate \"` + clientID + `\": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`},
		},
		{
			name:   "expired",
			cert:   leaf(pki, testpki.Expired),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time ", " is after "},
		},
		{
			name:   "not-yet-valid",
			cert:   leaf(pki, testpki.NotYetValid),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time ", " is before "},
		},
		{
			name:   "leaf-with-ca-flag",
			cert:   leaf(pki, testpki.LeafIsCA),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": x509svid: leaf certificate with CA flag set to true"},
		},
		{
			name:   "ca-certificate-as-leaf",
			cert:   caAsLeaf(pki),
			want:   refusedWith("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://shop.example\": x509svid: leaf certificate with CA flag set to true`},
		},
		{
			name:   "no-uri-san",
			cert:   leaf(pki, testpki.NoURISAN),
			want:   refusedWith("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN"},
		},
		{
			name:   "two-uri-sans",
			cert:   leaf(pki, testpki.TwoURISANs),
			want:   refusedWith("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN"},
		},
		{
			name:   "non-spiffe-uri",
			cert:   leaf(pki, testpki.HTTPSURI),
			want:   refusedWith("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: scheme is missing or invalid"},
		},
		{
			name:   "malformed-id-uppercase-trust-domain",
			cert:   leaf(pki, testpki.UppercaseTrustDomain),
			want:   refusedWith("bad certificate"),
			reason: []string{serial, ": x509svid: could not get leaf SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
		},
		{
			name:   "malformed-id-empty-path",
			cert:   leaf(pki, testpki.NoPath),
			want:   refusedWith("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://shop.example\": SPIFFE ID of an X.509-SVID must have a path`},
		},
		{
			name:   "no-digital-signature-key-usage",
			cert:   leaf(pki, testpki.NoDigitalSignature),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": leaf lacks the digitalSignature key usage"},
		},
		{
			name:   "trust-domain-without-bundle",
			cert:   svid(unknown, "spiffe://unknown.example/ns/x/sa/y"),
			want:   refusedWith("bad certificate"),
			reason: []string{`identity: client certificate \"spiffe://unknown.example/ns/x/sa/y\": x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain \"unknown.example\"`},
		},
		{
			name:   "trust-domain-not-accepted",
			cert:   svid(partner, "spiffe://partner.example/ns/x/sa/y"),
			want:   refusedWith("bad certificate"),
			reason: []string{`mesh: client \"spiffe://partner.example/ns/x/sa/y\" not authorized: trust domain \"partner.example\" is not accepted`},
		},
		{
			name:   "no-client-auth-usage",
			cert:   leaf(pki, testpki.NoClientAuth),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": leaf lacks the clientAuth extended key usage"},
		},
		{
			name:   "only-any-extended-key-usage",
			cert:   leaf(pki, testpki.OnlyAnyExtKeyUsage),
			want:   refusedWith("bad certificate"),
			reason: []string{"identity: client certificate " + leafID + ": leaf lacks the clientAuth extended key usage"},
		},
		{
			name:   "uri-san-not-canonical",
			cert:   leaf(pki, testpki.UppercaseScheme),
			want:   refusedWith("bad certificate"),
			reason: []string{serial, `: URI SAN \"SPIFFE://shop.example/test/leaf\" is not in canonical form \"spiffe://shop.example/test/leaf\"`},
		},
		{
			name: "key-does-not-match-certificate",
			cert: func(t *testing.T) *tls.Certificate {
				cert, _ := pki.Leaf(t, nil)
				_, other := pki.Leaf(t, nil)
				return tlsCert(other, cert)
			},
			want:   refusedWith("error decrypting message"),
			reason: []string{"tls: invalid signature by the client certificate: ECDSA verification failure"},
		},
		{
			// Refused within the handshake itself, so both clients always
			// see the alert.
			name:  "tls12-only-client",
			cert:  svid(pki, clientID),
			tweak: func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 },
			want: map[string][]clientWant{
				"grpc-go":    {{codes.Unavailable, "authentication handshake failed: remote error: tls: protocol version not supported"}},
				"connect-go": {{codes.Unavailable, "unavailable: remote error: tls: protocol version not supported"}},
			},
			reason: []string{"tls: client offered only unsupported versions: [303]"},
		},
	}
	for _, st := range securityStacks {
		for _, tc := range testCases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var logs testsync.Buffer
				addr := st.start(t, serverCreds, serverLog(&logs))
				cfg := clientTLS(t, pki, serverID)
				if tc.cert != nil {
					cert := tc.cert(t)
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
				} else {
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
				}
				if tc.tweak != nil {
					tc.tweak(cfg)
				}
				for client, call := range map[string]func(context.Context, string, *tls.Config) error{
					"grpc-go": grpcHealth, "connect-go": connectHealth,
				} {
					wantOneOf(t, client+" client", call(t.Context(), addr, cfg), tc.want[client])
				}
				wantLogLines(t, &logs, st.logPrefix, tc.reason...)
			})
		}
	}
}

// TestSecurityMatrixGoodClient is the control of the matrix: the same
// harness with a valid SVID gets through and logs nothing.
func TestSecurityMatrixGoodClient(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	for _, st := range securityStacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			var logs testsync.Buffer
			addr := st.start(t, creds, serverLog(&logs))
			cfg := clientTLS(t, pki, serverID)
			s := pki.SVID(t, clientID)
			cert := tlsCert(s.PrivateKey, s.Certificates...)
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			if err := grpcHealth(t.Context(), addr, cfg); err != nil {
				t.Errorf("grpc-go client: %v", err)
			}
			if err := connectHealth(t.Context(), addr, cfg); err != nil {
				t.Errorf("connect-go client: %v", err)
			}
			if l := logs.String(); strings.Contains(l, "level=WARN") {
				t.Errorf("server logged a warning for a valid client:\n%s", l)
			}
		})
	}
}

// TestSecurityMatrixPlaintext speaks plaintext to the TLS port: HTTP/2 with
// prior knowledge (h2c, what grpc-go's insecure credentials and
// connect-go's unencrypted HTTP/2 do) and HTTP/1.1.
func TestSecurityMatrixPlaintext(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	const notTLS = "tls: first record does not look like a TLS handshake"
	testCases := []struct {
		name   string
		client string
		call   func(context.Context, string, *tls.Config) error
		// want maps each server stack to what the client may see.
		want map[string][]clientWant
		// reason maps each server stack to its log line's reason.
		reason map[string]string
	}{
		{
			// The server reads garbage where a ClientHello should be and
			// closes the connection without a word.
			name: "h2c-prior-knowledge", client: "grpc-go", call: grpcHealth,
			want: map[string][]clientWant{
				"grpc-go":    {{codes.Unavailable, "error reading server preface: EOF"}, {codes.Unavailable, "connection reset by peer"}},
				"connect-go": {{codes.Unavailable, "error reading server preface: EOF"}, {codes.Unavailable, "connection reset by peer"}},
			},
			reason: map[string]string{"grpc-go": notTLS, "connect-go": notTLS},
		},
		{
			name: "h2c-prior-knowledge", client: "connect-go", call: connectHealth,
			want: map[string][]clientWant{
				"grpc-go":    {{codes.Unavailable, "unavailable: unexpected EOF"}, {codes.Unavailable, "http2: client conn could not be established"}, {codes.Canceled, "connection reset by peer"}, {codes.Canceled, "broken pipe"}},
				"connect-go": {{codes.Unavailable, "unavailable: unexpected EOF"}, {codes.Unavailable, "http2: client conn could not be established"}, {codes.Canceled, "connection reset by peer"}, {codes.Canceled, "broken pipe"}},
			},
			reason: map[string]string{"grpc-go": notTLS, "connect-go": notTLS},
		},
		{
			name: "http1", client: "net/http", call: http1Post,
			want: map[string][]clientWant{
				"grpc-go": {{codes.Unavailable, ": EOF"}, {codes.Unavailable, "connection reset by peer"}},
				// net/http answers a plaintext HTTP request to its TLS port.
				"connect-go": {{codes.Unknown, "400 Bad Request: Client sent an HTTP request to an HTTPS server."}},
			},
			reason: map[string]string{"grpc-go": notTLS, "connect-go": "client sent an HTTP request to an HTTPS server"},
		},
	}
	for _, st := range securityStacks {
		for _, tc := range testCases {
			t.Run(st.name+"/"+tc.name+"/"+tc.client, func(t *testing.T) {
				t.Parallel()
				var logs testsync.Buffer
				addr := st.start(t, creds, serverLog(&logs))
				wantOneOf(t, tc.client+" client", tc.call(t.Context(), addr, nil), tc.want[st.name])
				wantLogLines(t, &logs, st.logPrefix, tc.reason[st.name])
			})
		}
	}
}

// TestSecurityMatrixServerIdentity is the client's view: a mesh client
// (mesh.DialGRPC, mesh.NewHTTPClient) refuses a server that does not prove
// the SPIFFE ID it expects, before sending any request.
func TestSecurityMatrixServerIdentity(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	foreign := testpki.New(t, "shop.example")
	client := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	leafSVID := func(mutate func(*x509.Certificate)) *x509svid.SVID {
		cert, key := pki.Leaf(t, mutate)
		return &x509svid.SVID{ID: spiffeid.RequireFromString("spiffe://shop.example" + testpki.LeafID), Certificates: []*x509.Certificate{cert}, PrivateKey: key}
	}
	const leafID = "spiffe://shop.example" + testpki.LeafID
	testCases := []struct {
		name   string
		server *x509svid.SVID
		expect string
		// msg is the client's reason, the same for both clients.
		msg string
	}{
		{
			name: "wrong-spiffe-id", server: pki.SVID(t, "spiffe://shop.example/ns/shop/sa/payments"), expect: serverID,
			msg: `mesh: server "spiffe://shop.example/ns/shop/sa/payments" not authorized: want "` + serverID + `"`,
		},
		{
			name: "no-server-auth-usage", server: leafSVID(testpki.NoServerAuth), expect: leafID,
			msg: `identity: server certificate "` + leafID + `": leaf lacks the serverAuth extended key usage`,
		},
		{
			name: "server-from-another-ca", server: foreign.SVID(t, serverID), expect: serverID,
			msg: `identity: server certificate "` + serverID + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`,
		},
		{
			name: "expired-server", server: leafSVID(testpki.Expired), expect: leafID,
			msg: `identity: server certificate "` + leafID + `": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid`,
		},
	}
	for _, st := range securityStacks {
		for _, tc := range testCases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var logs testsync.Buffer
				addr := st.start(t, mesh.Credentials{SVID: tc.server, Bundles: pki.Bundle()}, serverLog(&logs))
				expect := spiffeid.RequireFromString(tc.expect)

				conn, err := mesh.DialGRPC(addr, client, expect)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
				// grpc-go quotes the handshake error inside its own message.
				if got := status.Code(err); got != codes.Unavailable || !strings.Contains(strings.ReplaceAll(errString(err), `\"`, `"`), "authentication handshake failed: "+tc.msg) {
					t.Errorf("grpc-go client: got %v %q, want Unavailable containing %q", got, errString(err), tc.msg)
				}

				hc, err := mesh.NewHTTPClient(client, expect)
				if err != nil {
					t.Fatal(err)
				}
				defer hc.CloseIdleConnections()
				_, err = connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
					"https://"+addr+"/grpc.health.v1.Health/Check", connect.WithGRPC()).
					CallUnary(t.Context(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
				if got := connect.CodeOf(err); got != connect.CodeUnavailable || !strings.HasPrefix(errString(err), "unavailable: "+tc.msg) {
					t.Errorf("connect-go client: got %v %q, want unavailable containing %q", got, errString(err), tc.msg)
				}
				// The server only learns that the client walked away.
				wantLogLines(t, &logs, st.logPrefix, "remote error: tls: bad certificate")
			})
		}
	}
}

// slowService is served by both stacks as grpc.channelz.v1.Channelz (a
// service whose descriptor is registered, as the connect server needs), with
// health messages on the wire: GetTopChannels waits for the call's
// deadline; GetServers answers at once.
const (
	slowMethod = "/grpc.channelz.v1.Channelz/GetTopChannels"
	echoMethod = "/grpc.channelz.v1.Channelz/GetServers"
)

func waitForDeadline(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

var slowServiceDesc = grpc.ServiceDesc{
	ServiceName: "grpc.channelz.v1.Channelz",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetTopChannels", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(healthpb.HealthCheckRequest)); err != nil {
				return nil, err
			}
			return nil, status.FromContextError(waitForDeadline(ctx)).Err()
		}},
		{MethodName: "GetServers", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(healthpb.HealthCheckRequest)); err != nil {
				return nil, err
			}
			return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
		}},
	},
}

func slowConnectHandler(opts ...connect.HandlerOption) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(slowMethod, connect.NewUnaryHandler(slowMethod,
		func(ctx context.Context, _ *connect.Request[healthpb.HealthCheckRequest]) (*connect.Response[healthpb.HealthCheckResponse], error) {
			return nil, waitForDeadline(ctx) // connect-go maps it to deadline_exceeded
		}, opts...))
	mux.Handle(echoMethod, connect.NewUnaryHandler(echoMethod,
		func(context.Context, *connect.Request[healthpb.HealthCheckRequest]) (*connect.Response[healthpb.HealthCheckResponse], error) {
			return connect.NewResponse(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}), nil
		}, opts...))
	return mux
}

// TestRefusedCalls covers calls from a valid peer that are refused cleanly:
// an oversized message, an exceeded deadline and unknown methods, without
// and with an authorization policy, on both stacks and with both clients.
// After each refusal the same connection still serves a good call.
func TestRefusedCalls(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	serverCreds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	clientCreds := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	engine, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-calls-test-services", Effect: policy.Allow, From: []string{clientID}, To: []string{
			"/grpc.channelz.v1.Channelz/*", "/grpc.health.v1.Health/*",
			"/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*",
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	start := map[string]func(t *testing.T, opts ...mesh.ServerOption) string{
		"grpc-go": func(t *testing.T, opts ...mesh.ServerOption) string {
			srv, err := mesh.NewGRPCServer(serverCreds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			srv.RegisterService(&slowServiceDesc, nil)
			return serve(t, srv.Serve)
		},
		"connect-go": func(t *testing.T, opts ...mesh.ServerOption) string {
			srv, err := mesh.NewConnectServer(serverCreds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			mountAs(t, srv, "/grpc.channelz.v1.Channelz/", slowConnectHandler)
			return serve(t, srv.Serve)
		},
	}
	type invoker func(ctx context.Context, method string, req *healthpb.HealthCheckRequest) error
	clients := map[string]func(t *testing.T, addr string) invoker{
		"grpc-go": func(t *testing.T, addr string) invoker {
			conn, err := mesh.DialGRPC(addr, clientCreds, spiffeid.RequireFromString(serverID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			return func(ctx context.Context, method string, req *healthpb.HealthCheckRequest) error {
				return conn.Invoke(ctx, method, req, new(healthpb.HealthCheckResponse))
			}
		},
		"connect-go": func(t *testing.T, addr string) invoker {
			hc, err := mesh.NewHTTPClient(clientCreds, spiffeid.RequireFromString(serverID))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(hc.CloseIdleConnections)
			return func(ctx context.Context, method string, req *healthpb.HealthCheckRequest) error {
				_, err := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, "https://"+addr+method, connect.WithGRPC()).
					CallUnary(ctx, connect.NewRequest(req))
				return err
			}
		},
	}

	big := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 5<<20)} // over the 4 MiB default
	testCases := []struct {
		name    string
		authz   bool
		method  string
		req     *healthpb.HealthCheckRequest
		timeout time.Duration
		// want maps "server stack/client" to the client's code and message.
		want map[string]clientWant
		// audit is a part of the audit log the call must write on the
		// grpc-go server ("" none). On connect-go a path without a handler
		// never reaches the authorization gate, so nothing is audited.
		audit string
	}{
		{
			name: "oversized-message", method: echoMethod, req: big,
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.ResourceExhausted, "grpc: received message larger than max (5242885 vs. 4194304)"},
				"grpc-go/connect-go":    {codes.ResourceExhausted, "grpc: received message larger than max (5242885 vs. 4194304)"},
				"connect-go/grpc-go":    {codes.ResourceExhausted, "message size 5242885 is larger than configured max 4194304"},
				"connect-go/connect-go": {codes.ResourceExhausted, "message size 5242885 is larger than configured max 4194304"},
			},
		},
		{
			name: "deadline-exceeded", method: slowMethod, req: &healthpb.HealthCheckRequest{}, timeout: 200 * time.Millisecond,
			// The message depends on whose timer fires first: the client's
			// ("context deadline exceeded") or the server's (which resets
			// the stream); the code does not.
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.DeadlineExceeded, ""},
				"grpc-go/connect-go":    {codes.DeadlineExceeded, ""},
				"connect-go/grpc-go":    {codes.DeadlineExceeded, ""},
				"connect-go/connect-go": {codes.DeadlineExceeded, ""},
			},
		},
		{
			name: "unknown-method-of-known-service", method: "/grpc.channelz.v1.Channelz/NoSuchMethod", req: &healthpb.HealthCheckRequest{},
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.Unimplemented, "unknown method NoSuchMethod for service grpc.channelz.v1.Channelz"},
				"grpc-go/connect-go":    {codes.Unimplemented, "unknown method NoSuchMethod for service grpc.channelz.v1.Channelz"},
				"connect-go/grpc-go":    {codes.Unimplemented, "unexpected HTTP status code received from server: 404 (Not Found)"},
				"connect-go/connect-go": {codes.Unimplemented, "HTTP status 404 Not Found"},
			},
		},
		{
			name: "unknown-service", method: "/no.such.Service/Method", req: &healthpb.HealthCheckRequest{},
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.Unimplemented, "unknown service no.such.Service"},
				"grpc-go/connect-go":    {codes.Unimplemented, "unknown service no.such.Service"},
				"connect-go/grpc-go":    {codes.Unimplemented, "procedure not served here"},
				"connect-go/connect-go": {codes.Unimplemented, "procedure not served here"},
			},
		},
		{
			// Allowed by the policy's service wildcard: the server then
			// says it has no such method.
			name: "policy/unknown-method-of-known-service", authz: true, method: "/grpc.channelz.v1.Channelz/NoSuchMethod", req: &healthpb.HealthCheckRequest{},
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.Unimplemented, "unknown method NoSuchMethod for service grpc.channelz.v1.Channelz"},
				"grpc-go/connect-go":    {codes.Unimplemented, "unknown method NoSuchMethod for service grpc.channelz.v1.Channelz"},
				"connect-go/grpc-go":    {codes.Unimplemented, "unexpected HTTP status code received from server: 404 (Not Found)"},
				"connect-go/connect-go": {codes.Unimplemented, "HTTP status 404 Not Found"},
			},
		},
		{
			// No rule covers it: grpc-go's tap denies it by default, and so
			// does the connect-go server's handler for unknown procedures;
			// both audit the denial.
			name: "policy/unknown-service", authz: true, method: "/no.such.Service/Method", req: &healthpb.HealthCheckRequest{},
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.PermissionDenied, clientID + " may not call /no.such.Service/Method"},
				"grpc-go/connect-go":    {codes.PermissionDenied, clientID + " may not call /no.such.Service/Method"},
				"connect-go/grpc-go":    {codes.PermissionDenied, clientID + " may not call /no.such.Service/Method"},
				"connect-go/connect-go": {codes.PermissionDenied, clientID + " may not call /no.such.Service/Method"},
			},
			audit: `msg="authz decision" caller=` + clientID + ` method=/no.such.Service/Method decision=deny rule=default-deny`,
		},
		{
			name: "policy/oversized-message", authz: true, method: echoMethod, req: big,
			want: map[string]clientWant{
				"grpc-go/grpc-go":       {codes.ResourceExhausted, "grpc: received message larger than max (5242885 vs. 4194304)"},
				"grpc-go/connect-go":    {codes.ResourceExhausted, "grpc: received message larger than max (5242885 vs. 4194304)"},
				"connect-go/grpc-go":    {codes.ResourceExhausted, "message size 5242885 is larger than configured max 4194304"},
				"connect-go/connect-go": {codes.ResourceExhausted, "message size 5242885 is larger than configured max 4194304"},
			},
		},
	}
	for _, stack := range []string{"grpc-go", "connect-go"} {
		for _, client := range []string{"grpc-go", "connect-go"} {
			for _, tc := range testCases {
				t.Run(stack+"/"+client+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					var logs, audit testsync.Buffer
					opts := []mesh.ServerOption{mesh.WithLogger(serverLog(&logs))}
					if tc.authz {
						a, err := interceptors.NewAuthorizer(engine, interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&audit, nil))))
						if err != nil {
							t.Fatal(err)
						}
						opts = append(opts, mesh.WithAuthorizer(a))
					} else {
						opts = append(opts, mesh.WithoutAuthorization())
					}
					call := clients[client](t, start[stack](t, opts...))
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					if tc.timeout > 0 {
						cancel()
						ctx, cancel = context.WithTimeout(t.Context(), tc.timeout)
					}
					began := time.Now()
					err := call(ctx, tc.method, tc.req)
					cancel()
					wantOneOf(t, client+" client", err, []clientWant{tc.want[stack+"/"+client]})
					if tc.timeout > 0 && time.Since(began) > tc.timeout+2*time.Second {
						t.Errorf("the call took %v with a %v deadline", time.Since(began), tc.timeout)
					}
					if tc.audit != "" && stack == "grpc-go" && !strings.Contains(audit.String(), tc.audit) {
						t.Errorf("audit log lacks %q:\n%s", tc.audit, audit.String())
					}
					// Clean: the connection still serves, nothing was logged.
					ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
					defer cancel()
					if err := call(ctx, echoMethod, &healthpb.HealthCheckRequest{}); err != nil {
						t.Errorf("a good call after the refusal failed: %v", err)
					}
					if l := logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
						t.Errorf("server logged:\n%s", l)
					}
				})
			}
		}
	}
}

// clientTLS returns a mesh client's TLS configuration (TLS 1.3, verifying
// that the server holds expect) for pki's trust domain, whose certificate
// the test then replaces.
func clientTLS(t *testing.T, pki *testpki.PKI, expect string) *tls.Config {
	t.Helper()
	cfg, err := mesh.ClientTLSConfig(mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()},
		tlsconfig.AuthorizeID(spiffeid.RequireFromString(expect)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func tlsCert(key crypto.Signer, chain ...*x509.Certificate) *tls.Certificate {
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// caAsLeaf presents the CA's own certificate, with its key, as a client
// certificate.
func caAsLeaf(pki *testpki.PKI) func(*testing.T) *tls.Certificate {
	return func(t *testing.T) *tls.Certificate {
		dir := t.TempDir()
		if err := pki.CA().Save(dir); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, certs.CAKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("%s: no PEM block", certs.CAKeyFile)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return tlsCert(key.(crypto.Signer), pki.CA().Certificate())
	}
}

// grpcHealth calls grpc.health.v1.Health/Check with a grpc-go client over
// cfg, or over plaintext HTTP/2 (h2c) when cfg is nil.
func grpcHealth(ctx context.Context, addr string, cfg *tls.Config) error {
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// connectHealth is grpcHealth with a connect-go client speaking gRPC over
// net/http; cfg nil means unencrypted HTTP/2 with prior knowledge.
func connectHealth(ctx context.Context, addr string, cfg *tls.Config) error {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	url := "https://" + addr
	if cfg == nil {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols, url = &p, "http://"+addr
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](&http.Client{Transport: tr},
		url+"/grpc.health.v1.Health/Check", connect.WithGRPC()).
		CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
	return err
}

// http1Post posts to the TLS port in plaintext HTTP/1.1. A response is
// reported as an error with code Unknown and the status and body as message.
func http1Post(ctx context.Context, addr string, _ *tls.Config) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", strings.NewReader(""))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return status.Error(codes.Unknown, resp.Status+": "+strings.TrimSpace(string(body)))
}

func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return codes.Code(ce.Code())
	}
	return status.Code(err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// wantLogLines waits for the server to log the refusal, then checks that
// every warning is one line that contains prefix and each of reason.
func wantLogLines(t *testing.T, logs *testsync.Buffer, prefix string, reason ...string) {
	t.Helper()
	last := reason[len(reason)-1]
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), last) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var warnings []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") {
			warnings = append(warnings, strings.TrimSuffix(line, "\n"))
		}
	}
	if len(warnings) == 0 {
		t.Fatalf("server logged no warning; want one saying %q", reason)
	}
	for _, w := range warnings {
		ok := strings.Contains(w, prefix)
		for _, r := range reason {
			ok = ok && strings.Contains(w, r)
		}
		if !ok {
			t.Errorf("server log line\n  %s\ndoes not contain %q and %q", w, prefix, reason)
		}
	}
}

// serverLog is the log of a test server, into logs, without the warning
// every server built WithoutAuthorization logs as it starts
// (TestWithoutAuthorizationIsLogged checks that one): these tests read
// what a server logs about the calls and connections they make.
func serverLog(logs io.Writer) *slog.Logger {
	return slog.New(withoutStartWarning{slog.NewTextHandler(logs, nil)})
}

type withoutStartWarning struct{ slog.Handler }

func (h withoutStartWarning) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "mesh: serving without authorization") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h withoutStartWarning) WithAttrs(as []slog.Attr) slog.Handler {
	return withoutStartWarning{h.Handler.WithAttrs(as)}
}

func (h withoutStartWarning) WithGroup(name string) slog.Handler {
	return withoutStartWarning{h.Handler.WithGroup(name)}
}
