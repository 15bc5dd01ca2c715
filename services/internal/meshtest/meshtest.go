package meshtest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

// The SPIFFE IDs of the sample mesh's workloads and of a person.
const (
	Gateway   = "spiffe://shop.example/ns/shop/sa/gateway"
	Orders    = "spiffe://shop.example/ns/shop/sa/orders"
	Inventory = "spiffe://shop.example/ns/shop/sa/inventory"
	Payments  = "spiffe://shop.example/ns/shop/sa/payments"
	Alice     = "spiffe://shop.example/user/alice"
)

// MaxHeaderBytes is the largest header block (gRPC trailers included) that
// the clients of this package accept: 16 KiB, the limit of Python grpcio.
const MaxHeaderBytes = 16 << 10

// Mesh is a throwaway trust domain, shop.example, whose members serve and
// call each other over mTLS. Create it with [New].
type Mesh struct {
	t   testing.TB
	pki *testpki.PKI
}

// New returns a Mesh with a fresh CA.
func New(t testing.TB) *Mesh {
	t.Helper()
	return &Mesh{t: t, pki: testpki.New(t, "shop.example")}
}

// TrustDomain is the trust domain of every Mesh.
var TrustDomain = spiffeid.RequireTrustDomainFromString("shop.example")

// Minter returns a transaction token minter that signs, as the sample
// mesh's gateway does, with an SVID of [Gateway]: the one minter the
// servers of m trust. Every call returns a new one.
func (m *Mesh) Minter() *txn.Minter {
	m.t.Helper()
	return m.MinterFor(Gateway)
}

// MinterFor returns a transaction token minter that signs with an SVID of
// id; the servers of m trust its tokens only if id is [Gateway].
func (m *Mesh) MinterFor(id string) *txn.Minter {
	m.t.Helper()
	mt, err := txn.NewMinter(m.Credentials(id).SVID, TrustDomain)
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	return mt
}

// Token returns a transaction token for subject, minted by an SVID of
// minter (see [Mesh.MinterFor]) for method, valid for a minute.
func (m *Mesh) Token(minter, subject, method string) *txn.Token {
	m.t.Helper()
	id, err := spiffeid.FromString(subject)
	if err != nil {
		m.t.Fatalf("meshtest: subject: %v", err)
	}
	tok, err := m.MinterFor(minter).Mint(context.Background(), txn.Request{Subject: id, Method: method})
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	return tok
}

// OnBehalfOf returns a copy of ctx carrying a transaction token that the
// gateway minted for subject, as the context of a call the gateway serves
// for subject would: a service's handler called with it directly sees
// subject (txn.FromContext), and a mesh client forwards the token to the
// servers of m, which verify it.
func (m *Mesh) OnBehalfOf(ctx context.Context, subject string) context.Context {
	m.t.Helper()
	return txn.NewContext(ctx, m.Token(Gateway, subject, "/shop.gateway.v1.StorefrontService/PlaceOrder"))
}

// authorization is the authorizer of a server of m serving as id: every
// member of the trust domain may call every method, and transaction tokens
// work as in the sample mesh: the gateway mints one for each call (the
// edge), every other server verifies the one a call carries ([Gateway] is
// the only minter) and refuses the call if it does not verify.
func (m *Mesh) authorization(id string) mesh.ServerOption {
	m.t.Helper()
	e, err := policy.Compile(policy.Policy{
		TxnIssuers: []string{Gateway},
		Rules:      []policy.Rule{{Name: "members-call-anything", Effect: policy.Allow, From: []string{"spiffe://shop.example"}, To: []string{"*"}}},
	})
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	txnOpt := interceptors.WithTransactionTokens(m.pki.Bundle(), TrustDomain)
	if id == Gateway {
		txnOpt = interceptors.WithTxnMinter(m.Minter())
	}
	a, err := interceptors.NewAuthorizer(e, txnOpt)
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	return mesh.WithAuthorizer(a)
}

// Credentials returns credentials with a fresh SVID for id.
func (m *Mesh) Credentials(id string) mesh.Credentials {
	m.t.Helper()
	return mesh.Credentials{SVID: m.pki.SVID(m.t, id), Bundles: m.pki.Bundle()}
}

// ServeGRPC serves, as id, a mesh grpc-go server with what register
// registers, until the test ends, and returns its address. Every member of
// the trust domain may call it, with transaction tokens as the package doc
// says. opts come after the authorizer; they may be grpc-go only ones, such
// as mesh.WithGRPCInterceptors.
func (m *Mesh) ServeGRPC(id string, register func(grpc.ServiceRegistrar), opts ...mesh.GRPCServerOption) string {
	m.t.Helper()
	srv, err := mesh.NewGRPCServer(m.Credentials(id), append([]mesh.GRPCServerOption{m.authorization(id)}, opts...)...)
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	register(srv)
	return m.serve(srv.Serve)
}

// ServeConnect serves, as id, a mesh connect-go server with what mount
// mounts (with mesh.Mount), until the test ends, and returns its address.
// Every member of the trust domain may call it, with transaction tokens as
// the package doc says. opts come after the authorizer; they may be
// connect-go only ones, such as mesh.WithConnectHandlerOptions.
func (m *Mesh) ServeConnect(id string, mount func(*mesh.ConnectServer) error, opts ...mesh.ConnectServerOption) string {
	m.t.Helper()
	srv, err := mesh.NewConnectServer(m.Credentials(id), append([]mesh.ConnectServerOption{m.authorization(id)}, opts...)...)
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	if err := mount(srv); err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	return m.serve(srv.Serve)
}

func (m *Mesh) serve(serve func(context.Context, net.Listener) error) string {
	m.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	m.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			m.t.Errorf("meshtest: serve %s: %v", ln.Addr(), err)
		}
	})
	return ln.Addr().String()
}

// DialGRPC returns a grpc-go connection to addr that presents an SVID for
// caller and accepts only the server ID server, closed when the test ends.
func (m *Mesh) DialGRPC(addr, caller, server string) *grpc.ClientConn {
	m.t.Helper()
	return m.DialGRPCWith(m.Credentials(caller), addr, server)
}

// DialGRPCWith is [Mesh.DialGRPC] with the caller's credentials given, for
// a service whose own SVID calls its downstream.
func (m *Mesh) DialGRPCWith(creds mesh.Credentials, addr, server string) *grpc.ClientConn {
	m.t.Helper()
	conn, err := mesh.DialGRPC(addr, creds, spiffeid.RequireFromString(server),
		mesh.WithDialOptions(grpc.WithMaxHeaderListSize(MaxHeaderBytes)))
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	m.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// HTTPClient returns an HTTP/2 client for connect-go clients that presents
// an SVID for caller and accepts only the server ID server; its idle
// connections are closed when the test ends.
func (m *Mesh) HTTPClient(caller, server string) *http.Client {
	m.t.Helper()
	return m.HTTPClientWith(m.Credentials(caller), server)
}

// HTTPClientWith is [Mesh.HTTPClient] with the caller's credentials given.
func (m *Mesh) HTTPClientWith(creds mesh.Credentials, server string) *http.Client {
	m.t.Helper()
	hc, err := mesh.NewHTTPClient(creds, spiffeid.RequireFromString(server))
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	if tr, ok := hc.Transport.(*http.Transport); ok {
		tr.MaxResponseHeaderBytes = MaxHeaderBytes
	}
	m.t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// ClosedAddr returns a loopback address that nothing listens on: a port
// that was free a moment ago.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("meshtest: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("meshtest: %v", err)
	}
	return addr
}

// Log is a logger whose output tests read. Create it with [NewLog].
type Log struct {
	// Logger writes text lines at Debug level and above.
	Logger *slog.Logger

	mu  sync.Mutex
	buf bytes.Buffer
}

// NewLog returns an empty Log.
func NewLog() *Log {
	l := &Log{}
	l.Logger = slog.New(slog.NewTextHandler(writer{l}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return l
}

// String returns everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// HasLine reports whether one line of the log contains every one of subs.
func (l *Log) HasLine(subs ...string) bool {
	for line := range strings.Lines(l.String()) {
		all := true
		for _, sub := range subs {
			if !strings.Contains(line, sub) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

type writer struct{ l *Log }

func (w writer) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.buf.Write(p)
}
