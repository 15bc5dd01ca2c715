package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/rpcerr"
)

// ConnectServer is a connect-go HTTP server behind mutual TLS: one port that
// speaks gRPC, gRPC-Web and Connect (HTTP/2 and HTTP/1.1), with health and
// reflection for every mounted service. Mount services with [Mount] before
// calling Serve.
//
// Every request is checked in the server's own HTTP layer, in front of
// every handler and before any message is read: the caller is the peer
// verified at the handshake (no verified peer: Unauthenticated), then the
// rate limit and the authorization of the request's procedure apply,
// whatever protocol the call uses (gRPC, gRPC-Web, Connect POST or GET) and
// whether or not a handler serves it.
type ConnectServer struct {
	tls     *tls.Config
	cfg     *serverConfig
	authz   *interceptors.Authorizer // nil without authorization
	peers   *peers
	reflect *servedDescriptors
	opts    []connect.HandlerOption // given to every handler
	svid    x509svid.Source

	mu       sync.Mutex
	mux      *http.ServeMux
	services []string
	handler  http.Handler // built on first use; Mount fails after
	health   *grpchealth.StaticChecker
}

// CompressMinBytes is the smallest message a mesh connect-go server or
// client compresses (when the peer accepts gzip): below it, gzip costs more
// CPU than it saves on the wire (it was a quarter of a connect-go server's
// CPU on small responses). Pass connect.WithCompressMinBytes in
// [WithConnectHandlerOptions] to change it.
const CompressMinBytes = 1024

// NewConnectServer builds a connect-go server with the workload's
// credentials. Like grpc-go's default, it reads messages of at most 4 MiB: a
// larger one is refused with ResourceExhausted (connect-go itself sets no
// limit; pass connect.WithReadMaxBytes in [WithConnectHandlerOptions] to
// change it). It compresses only responses of [CompressMinBytes] or more. Each client connection may hold
// [DefaultMaxConcurrentStreams] calls at once (see
// [WithMaxConcurrentStreams]).
func NewConnectServer(creds Credentials, opts ...ConnectServerOption) (*ConnectServer, error) {
	cfg, err := newConnectServerConfig(opts)
	if err != nil {
		return nil, err
	}
	own := []connect.HandlerOption{
		connect.WithReadMaxBytes(4 << 20),              // as grpc-go: a larger message is refused with ResourceExhausted
		connect.WithCompressMinBytes(CompressMinBytes), // gzip costs more than it saves on small messages
		connectRecovery(cfg.log),                       // a panic costs one call, not the process
	}
	authz, err := cfg.withFrontProxies(cfg.authorizer, creds) // WithFrontProxies (jwtsvid.go)
	if err != nil {
		return nil, err
	}
	if t := cfg.telemetry; t != nil {
		in, err := t.instrumentation(true)
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		// The span's interceptor outside, so the span exists when the
		// trace interceptor records the caller, decision and chain on it.
		own = append(own, connect.WithInterceptors(in.ConnectInterceptor(), interceptors.ConnectServerTrace()))
		if authz != nil {
			if authz, err = authz.WithTelemetry(t.TracerProvider, t.MeterProvider, t.Propagator, t.TrustRemote); err != nil {
				return nil, err
			}
		}
	}
	base, authorize, err := serverTLS(creds, cfg)
	if err != nil {
		return nil, err
	}
	base.NextProtos = []string{"h2", "http/1.1"} // Connect and gRPC-Web also work over HTTP/1.1
	s := &ConnectServer{
		cfg: cfg, authz: authz, reflect: new(servedDescriptors),
		opts: append(own, cfg.connectOptions...),
		mux:  http.NewServeMux(),
		svid: creds.SVID,
	}
	s.peers = newPeers(creds.Bundles, authorize, cfg.log)
	s.tls = s.peers.tlsConfig(base, identity.Client)
	return s, nil
}

// Mount serves a connect-go service on s: newHandler is the generated
// constructor and impl its implementation, which must implement the
// constructor's handler interface:
//
//	err := mesh.Mount(srv, greetv1connect.NewGreetServiceHandler, &greeter{})
//
// Mount builds the handler with the server's options (message size limit,
// panic recovery, telemetry, then [WithConnectHandlerOptions]) followed by
// opts, so that none can be left out. The service is then served health and
// reflection, and its methods need allow rules like every other. Mount
// fails for an impl of the wrong type, a service whose descriptor is not
// registered, a service mounted twice, and once the server has started.
func Mount[T any](s *ConnectServer, newHandler func(T, ...connect.HandlerOption) (string, http.Handler), impl any, opts ...connect.HandlerOption) error {
	if s == nil || newHandler == nil {
		return errors.New("mesh: Mount: nil server or handler constructor")
	}
	svc, ok := impl.(T)
	if !ok || impl == nil {
		return fmt.Errorf("mesh: Mount: %T does not implement %s", impl, reflect.TypeFor[T]())
	}
	path, h := newHandler(svc, slices.Concat(s.opts, opts)...)
	return s.mount(path, h)
}

func (s *ConnectServer) mount(path string, h http.Handler) error {
	name := strings.Trim(path, "/")
	if name == "" || strings.Contains(name, "/") || path != "/"+name+"/" {
		return fmt.Errorf("mesh: Mount: path %q is not a service path (\"/package.Service/\")", path)
	}
	if _, err := ServiceMethods(name); err != nil {
		return fmt.Errorf("mesh: Mount: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handler != nil {
		return fmt.Errorf("mesh: Mount %s: the server has started", name)
	}
	if slices.Contains(s.services, name) {
		return fmt.Errorf("mesh: Mount %s: already mounted", name)
	}
	s.mux.Handle(path, h)
	s.services = append(s.services, name)
	return nil
}

// Handler returns the server's complete HTTP handler: the identity, rate
// limit and authorization layer in front of the mounted services, health
// and reflection. Serve uses it. It identifies callers only on connections
// that Serve accepted (their peer is verified at the handshake), so
// behind any other server it refuses every request with Unauthenticated.
// After the first call, Mount fails.
func (s *ConnectServer) Handler() http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handler != nil {
		return s.handler
	}
	s.health = grpchealth.NewStaticChecker(s.services...)
	s.mux.Handle(grpchealth.NewHandler(s.health, s.opts...))
	if !s.cfg.noReflection {
		reflector := grpcreflect.NewReflector(grpcreflect.NamerFunc(func() []string { return slices.Clone(s.services) }),
			grpcreflect.WithDescriptorResolver(s.reflect), grpcreflect.WithExtensionResolver(s.reflect))
		s.mux.Handle(grpcreflect.NewHandlerV1(reflector, s.opts...))
		s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, s.opts...))
	}
	// Whatever no handler serves: already authorized (an unknown method is
	// denied by default), so what reaches here is a call the policy allows
	// to a procedure that is not served.
	s.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rpcerr.Write(w, r, connect.NewError(connect.CodeUnimplemented, errors.New("procedure not served here")))
	}))
	var h http.Handler = s.mux
	if s.authz != nil {
		h = s.authz.HTTPHandler(h)
	}
	if s.cfg.rateLimiter != nil {
		h = s.cfg.rateLimiter.HTTPHandler(h)
	}
	s.handler = s.identify(h)
	return s.handler
}

type peerConnKey struct{}

// identify is the first layer of every request: it refuses a request on a
// connection without a verified peer, and from shortly before that peer's
// certificate expires asks the client to move to a new connection
// ("Connection: close": an HTTP/2 GOAWAY). The verified peer is already in
// the request's context, from the connection's (connContext): no request
// is copied for it.
func (s *ConnectServer) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pc, _ := r.Context().Value(peerConnKey{}).(*peerConn)
		ok := false
		if pc != nil {
			_, ok = pc.state.Principal()
		}
		if !ok {
			rpcerr.Write(w, r, connect.NewError(connect.CodeUnauthenticated, errors.New("no verified peer certificate on this connection")))
			return
		}
		if pc.expiring.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// connContext gives each accepted connection its entry in peers, which the
// handshake fills with the verified peer, and makes it the identity of the
// connection's requests (identity.FromContext reads the verified peer).
func (s *ConnectServer) connContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	pc := s.peers.conn(tc.NetConn())
	return authn.NewConnContext(context.WithValue(ctx, peerConnKey{}, pc), &pc.state)
}

// connState drops a connection's entry when it ends.
func (s *ConnectServer) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		s.peers.forget(tc.NetConn())
	}
}

// Check runs the checks Serve starts with, so that a program can fail
// before it opens a port: every served method is covered by an allow rule
// and every deny rule that applies here matches a served method (unless
// [WithCoverageWarnings]). Mount every service first.
func (s *ConnectServer) Check() error {
	methods, err := s.Methods()
	if err == nil {
		err = s.cfg.checkCoverage(methods)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	names := append(slices.Clone(s.services), "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
	s.mu.Unlock()
	return s.reflect.set(names)
}

// ListenAndServe runs [ConnectServer.Check], then listens on the TCP
// address addr and serves until ctx ends, like [ConnectServer.Serve].
func (s *ConnectServer) ListenAndServe(ctx context.Context, addr string) error {
	if err := s.Check(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mesh: connect server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve runs [ConnectServer.Check] (closing ln if it fails) and serves on ln
// (TLS is applied here) until ctx ends; then it stops gracefully within the
// shutdown timeout and returns nil. It returns the error that made it stop
// otherwise. While it serves, a policy reload that would leave a served
// method uncovered, or bring a deny rule that matches no served method, is
// rejected, and every connection ends when its peer's
// certificate expires or no longer verifies.
func (s *ConnectServer) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Check(); err != nil {
		_ = ln.Close()
		return err
	}
	methods, _ := s.Methods() // Check succeeded
	release := s.cfg.guardReloads(s.authz, methods)
	defer release()
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tls,
		ConnContext:       s.connContext,
		ConnState:         s.connState,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(s.cfg.maxStreams)},
		ErrorLog:          slog.NewLogLogger(s.cfg.log.Handler(), slog.LevelWarn),
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.peers.watch(wctx, s.cfg.recheck, identity.Client)
	go followServing(wctx, s.svid, s.setServing)

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("mesh: connect server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mesh: connect server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// setServing sets every mounted service (and the server, "") SERVING or
// NOT_SERVING in grpc.health.v1.
func (s *ConnectServer) setServing(serving bool) {
	st := grpchealth.StatusNotServing
	if serving {
		st = grpchealth.StatusServing
	}
	s.mu.Lock()
	services := slices.Clone(s.services)
	s.mu.Unlock()
	for _, name := range append(services, "") {
		s.health.SetStatus(name, st)
	}
}

// Methods returns the full names ("/pkg.Service/Method") of every method the
// server serves, health and reflection included, sorted. The mounted
// services' descriptors must be registered (linking their generated code
// does that).
func (s *ConnectServer) Methods() ([]string, error) {
	s.mu.Lock()
	services := slices.Clone(s.services)
	s.mu.Unlock()
	out, err := ServiceMethods(services...)
	if err != nil {
		return nil, err
	}
	if s.cfg.noReflection {
		out = append(out, "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
	} else {
		out = append(out, ConnectStandardMethods()...)
	}
	slices.Sort(out)
	return out, nil
}
