package mesh_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/channelz/grpc_channelz_v1" // a registered service descriptor for the health test
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

const (
	serverID = "spiffe://shop.example/ns/shop/sa/orders"
	clientID = "spiffe://shop.example/ns/shop/sa/gateway"
)

// seen records the Principal that handlers saw.
type seen struct {
	mu sync.Mutex
	p  identity.Principal
}

func (s *seen) set(ctx context.Context) {
	p, _ := identity.FromContext(ctx)
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

func (s *seen) reset() {
	s.mu.Lock()
	s.p = identity.Principal{}
	s.mu.Unlock()
}

func (s *seen) get() identity.Principal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startGRPC serves a mesh grpc-go server with the SVID id from pki.
func startGRPC(t *testing.T, pki *testpki.PKI, id string, rec *seen) string {
	t.Helper()
	capture := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		rec.set(ctx)
		return h(ctx, req)
	}
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, id), Bundles: pki.Bundle()},
		mesh.WithoutAuthorization(), mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{capture}, nil))
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, srv.Serve)
}

// startConnect serves a mesh connect-go server with the SVID id from pki.
func startConnect(t *testing.T, pki *testpki.PKI, id string, rec *seen) string {
	t.Helper()
	capture := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			rec.set(ctx)
			return next(ctx, req)
		}
	})
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, id), Bundles: pki.Bundle()},
		mesh.WithoutAuthorization(), mesh.WithConnectHandlerOptions(connect.WithInterceptors(capture)))
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, srv.Serve)
}

// mountAs mounts the handler build makes (given the server's handler
// options) at path, as a generated NewXHandler would be mounted.
func mountAs(t *testing.T, srv *mesh.ConnectServer, path string, build func(...connect.HandlerOption) http.Handler) {
	t.Helper()
	newHandler := func(_ struct{}, opts ...connect.HandlerOption) (string, http.Handler) { return path, build(opts...) }
	if err := mesh.Mount(srv, newHandler, struct{}{}); err != nil {
		t.Fatal(err)
	}
}

func serve(t *testing.T, fn func(context.Context, net.Listener) error) string {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func grpcCheck(t *testing.T, addr string, creds mesh.Credentials, expect string) error {
	t.Helper()
	conn, err := mesh.DialGRPC(addr, creds, spiffeid.RequireFromString(expect))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", resp.GetStatus())
	}
	return err
}

func connectCheck(t *testing.T, addr string, creds mesh.Credentials, expect string) error {
	t.Helper()
	hc, err := mesh.NewHTTPClient(creds, spiffeid.RequireFromString(expect))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
		"https://"+addr+"/grpc.health.v1.Health/Check", connect.WithGRPC())
	resp, err := client.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
	if err == nil && resp.Msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", resp.Msg.GetStatus())
	}
	return err
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	foreign := testpki.New(t, "shop.example") // another CA for the same trust domain
	partner := testpki.New(t, "partner.example")
	good := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}

	stacks := []struct {
		name  string
		start func(*testing.T, *testpki.PKI, string, *seen) string
		check func(*testing.T, string, mesh.Credentials, string) error
	}{
		{"grpc-go", startGRPC, grpcCheck},
		{"connect-go", startConnect, connectCheck},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			rec := &seen{}
			addr := st.start(t, pki, serverID, rec)

			t.Run("member-is-identified", func(t *testing.T) {
				if err := st.check(t, addr, good, serverID); err != nil {
					t.Fatalf("call: %v", err)
				}
				if got := rec.get().ID.String(); got != clientID {
					t.Errorf("handler saw caller %q, want %q", got, clientID)
				}
			})
			t.Run("wrong-server-id-is-refused", func(t *testing.T) {
				rec.reset()
				err := st.check(t, addr, good, "spiffe://shop.example/ns/shop/sa/payments")
				if code := status.Code(err); st.name == "grpc-go" && code != codes.Unavailable {
					t.Errorf("code = %v, want Unavailable", code)
				}
				wantRefused(t, rec, err, `not authorized: want`)
			})
			t.Run("client-from-other-ca-is-refused", func(t *testing.T) {
				creds := mesh.Credentials{SVID: foreign.SVID(t, clientID), Bundles: pki.Bundle()}
				rec.reset()
				wantRefused(t, rec, st.check(t, addr, creds, serverID), "")
			})
			t.Run("client-from-unknown-trust-domain-is-refused", func(t *testing.T) {
				creds := mesh.Credentials{SVID: partner.SVID(t, "spiffe://partner.example/x"), Bundles: pki.Bundle()}
				rec.reset()
				wantRefused(t, rec, st.check(t, addr, creds, serverID), "")
			})
			t.Run("no-client-certificate-is-refused", func(t *testing.T) {
				wantHandshakeRefused(t, addr, nil)
			})
			t.Run("tls12-is-refused", func(t *testing.T) {
				svid := pki.SVID(t, clientID)
				wantHandshakeRefused(t, addr, svid, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
			})
		})
	}
}

// wantRefused checks that a call failed without reaching the server's
// handlers. (How a refused TLS 1.3 client certificate surfaces differs by
// client: grpc-go says Unavailable, net/http may see a broken pipe.)
func wantRefused(t *testing.T, rec *seen, err error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatal("call succeeded; want it refused at the handshake")
	}
	if p := rec.get(); !p.IsZero() {
		t.Errorf("a refused call reached the handlers as %s", p)
	}

	if contains != "" && !strings.Contains(err.Error(), contains) {
		t.Errorf("error %q does not mention %q", err, contains)
	}
}

// wantHandshakeRefused makes a raw TLS connection (no client certificate when
// svid is nil) and checks that the server refuses it. With TLS 1.3 the client
// learns of a refused certificate on its first read.
func wantHandshakeRefused(t *testing.T, addr string, svid *x509svid.SVID, mutate ...func(*tls.Config)) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec // this client tests the server
	if svid != nil {
		cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
		for _, c := range svid.Certificates {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	for _, m := range mutate {
		m(cfg)
	}
	// A refusal is a TLS alert from the server: during the handshake (TLS
	// 1.2, protocol version) or on the first read after it (TLS 1.3, where
	// the server checks the client's certificate after the client is done).
	// A timeout, a refused connection or any other error is not a refusal.
	refused := func(err error) bool {
		msg := err.Error()
		return strings.Contains(msg, "remote error: tls:") || strings.Contains(msg, "connection reset by peer") ||
			strings.Contains(msg, "broken pipe")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		if !refused(err) {
			t.Fatalf("handshake failed, but not with a refusal from the server: %v", err)
		}
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		if !refused(err) {
			t.Fatalf("write failed, but not with a refusal from the server: %v", err)
		}
		return
	}
	_, err = conn.Read(make([]byte, 1))
	switch {
	case err == nil:
		t.Fatal("server accepted a connection it should have refused")
	case !refused(err):
		t.Fatalf("read failed, but not with a refusal from the server: %v", err)
	}
}

func TestHealthOnConnectServer(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	srv, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
	if err != nil {
		t.Fatal(err)
	}
	mountAs(t, srv, "/grpc.channelz.v1.Channelz/", func(...connect.HandlerOption) http.Handler { return http.NotFoundHandler() }) // any registered service will do
	addr := serve(t, srv.Serve)
	hc, err := mesh.NewHTTPClient(mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(serverID))
	if err != nil {
		t.Fatal(err)
	}
	client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
		"https://"+addr+"/grpc.health.v1.Health/Check")
	for svc, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":                          healthpb.HealthCheckResponse_SERVING,
		"grpc.channelz.v1.Channelz": healthpb.HealthCheckResponse_SERVING,
	} {
		resp, err := client.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{Service: svc}))
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.Msg.GetStatus() != want {
			t.Errorf("Check(%q) = %v, want %v", svc, resp.Msg.GetStatus(), want)
		}
	}
	_, err = client.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{Service: "no.such.Service"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Check(unknown) err = %v, want NotFound", err)
	}
	_ = grpchealth.StatusServing
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	testCases := []struct {
		name string
		fn   func() error
		want string
	}{
		{"grpc-no-svid", func() error {
			_, err := mesh.NewGRPCServer(mesh.Credentials{Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
			return err
		},
			"mesh: credentials: no SVID source"},
		{"connect-no-bundle", func() error {
			_, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, serverID)}, mesh.WithoutAuthorization())
			return err
		},
			"mesh: credentials: no trust bundle source"},
		{"grpc-no-authorization-choice", func() error {
			_, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()})
			return err
		}, "mesh: no authorization: pass WithAuthorizer, or WithoutAuthorization to let every trust-domain member call every method"},
		{"connect-no-authorization-choice", func() error {
			_, err := mesh.NewConnectServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()})
			return err
		}, "mesh: no authorization: pass WithAuthorizer, or WithoutAuthorization to let every trust-domain member call every method"},
		{"dial-no-expected-id", func() error {
			_, err := mesh.DialGRPC("127.0.0.1:1", mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}, spiffeid.ID{})
			return err
		}, "mesh: dial 127.0.0.1:1: no expected server SPIFFE ID"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.fn(); err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// stuckCredentials' server handshake waits, without reading, until
// release is closed.
type stuckCredentials struct {
	credentials.TransportCredentials
	release chan struct{}
}

func (c *stuckCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	<-c.release
	return nil, nil, errors.New("released")
}

func (c *stuckCredentials) Info() credentials.ProtocolInfo { return credentials.ProtocolInfo{} }

// TestRawOptionsCannotWeakenTLS: transport credentials passed as a raw
// grpc-go option are refused by NewGRPCServer, as DialGRPC refuses them in
// its dial options (they were replaced by the mesh's mutual TLS, silently);
// other raw options build a server that serves mTLS only.
func TestRawOptionsCannotWeakenTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	const want = "mesh: NewGRPCServer: WithGRPCServerOptions: transport credentials are the mesh's mTLS; remove grpc.Creds from the server options"
	for name, opts := range map[string][]grpc.ServerOption{
		"insecure":      {grpc.Creds(insecure.NewCredentials())},
		"tls":           {grpc.MaxRecvMsgSize(1 << 20), grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}))},
		"local":         {grpc.Creds(local.NewCredentials())},
		"after another": {grpc.ConnectionTimeout(time.Second), grpc.Creds(insecure.NewCredentials())},
	} {
		start := time.Now()
		_, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithGRPCServerOptions(opts...))
		if err == nil || err.Error() != want {
			t.Errorf("%s: NewGRPCServer = %v, want %s", name, err, want)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: the check took %v: it waited out its bound instead of seeing the handshake", name, d)
		}
	}
	// Credentials whose handshake never returns cannot hold NewGRPCServer:
	// it says it could not tell, rather than blaming or passing them.
	stuck := &stuckCredentials{release: make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	_, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithGRPCServerOptions(grpc.Creds(stuck)))
	if want := "mesh: NewGRPCServer: WithGRPCServerOptions: could not tell within 5s whether the options set transport credentials (a handshake neither ran the mesh's nor ended): remove grpc.Creds from them"; err == nil || err.Error() != want {
		t.Errorf("stuck credentials: NewGRPCServer = %v, want %s", err, want)
	}
	srv, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithGRPCServerOptions(grpc.MaxRecvMsgSize(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv.Serve)
	if err := grpcCheck(t, addr, mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}, serverID); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext call: %v, want Unavailable", err)
	}
}
