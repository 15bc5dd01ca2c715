package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
)

// GRPCServer is a grpc-go server behind mutual TLS, with health and
// reflection. Register services on it (it is a grpc.ServiceRegistrar) before
// calling Serve.
type GRPCServer struct {
	// catalog holds the registrations until Serve builds server: a
	// grpc.Server with stream workers starts their goroutines as it is
	// made and ends them only when stopped, so the serving one is made by
	// Serve, which stops it on every way out. The catalog has no workers
	// and is stopped as soon as it is made (grpc-go still takes
	// registrations then, and reports them); it checks each registration
	// as grpc-go does and answers GetServiceInfo.
	catalog *grpc.Server
	gopts   []grpc.ServerOption // of the serving server
	mu      sync.Mutex
	regs    []registration
	server  *grpc.Server // nil until Serve
	health  *health.Server
	cfg     *serverConfig
	authz   *interceptors.Authorizer // nil without authorization
	peers   *peers
	reflect *servedDescriptors
	svid    x509svid.Source
}

var _ grpc.ServiceRegistrar = (*GRPCServer)(nil)

// keepaliveDefaults are the grpc-go server's keepalive settings unless raw
// options given with [WithGRPCServerOptions] replace them: idle connections
// are closed after five minutes, a silent peer is probed after one and
// dropped 20s later, and a client may ping every 20s (grpc-go's own default
// allows one ping in five minutes and drops clients that ping more).
var keepaliveDefaults = []grpc.ServerOption{
	grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
	grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
}

// DefaultStreamWorkers is the number of goroutines a [GRPCServer] keeps to
// serve calls on (grpc.NumStreamWorkers), unless [WithStreamWorkers] (or a
// raw grpc.NumStreamWorkers in [WithGRPCServerOptions], unchecked) says
// otherwise: four per GOMAXPROCS at the time [NewGRPCServer] runs, at
// least eight. grpc-go's default starts a
// goroutine per call, whose stack then grows (copied each time) to the
// depth the call needs; a worker's stack stays grown from call to call
// (until a garbage collection halves it, if it is mostly unused then).
// Stack growth was 11–13% of the mesh's grpc-go server CPU in a profile;
// with the workers a small call costs it about 7 µs less (BENCHMARKS.md).
// A call that finds every worker busy (a stream holds its worker until it
// ends) gets its own goroutine, as by default; grpc-go replaces each worker
// after 65,536 calls.
func DefaultStreamWorkers() uint32 { return uint32(max(8, 4*runtime.GOMAXPROCS(0))) }

// NewGRPCServer builds a grpc-go server with the workload's credentials.
// Each client connection may hold [DefaultMaxConcurrentStreams] calls at
// once (see [WithMaxConcurrentStreams]). Calls are served on a pool of
// goroutines reused from call to call ([DefaultStreamWorkers];
// [WithStreamWorkers](0) gives each call its own goroutine, grpc-go's
// default), so what a handler leaves on its goroutine
// or OS thread is there for the next call served on it, whoever the caller:
// pprof labels set with pprof.SetGoroutineLabels (pprof.Do restores them),
// and a thread locked with runtime.LockOSThread and not unlocked, which
// grpc-go's default would discard with the goroutine. A handler that
// changes its thread (unix.Setns, per-thread credentials) and relies on
// that must be served with WithStreamWorkers(0).
func NewGRPCServer(creds Credentials, opts ...GRPCServerOption) (*GRPCServer, error) {
	cfg, err := newGRPCServerConfig(opts)
	if err != nil {
		return nil, err
	}
	base, authorize, err := serverTLS(creds, cfg)
	if err != nil {
		return nil, err
	}
	s := &GRPCServer{health: health.NewServer(), cfg: cfg, authz: cfg.authorizer, reflect: new(servedDescriptors), svid: creds.SVID}
	if s.authz, err = cfg.withFrontProxies(s.authz, creds); err != nil { // WithFrontProxies (jwtsvid.go)
		return nil, err
	}
	s.peers = newPeers(creds.Bundles, authorize, cfg.log)
	tlsCfg := s.peers.tlsConfig(base, identity.Client)
	// Recovery first, so a panic anywhere after it costs one call, not the
	// process.
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(grpcRecovery(cfg.log)), interceptors.UnaryServerIdentity()}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(grpcRecovery(cfg.log)), interceptors.StreamServerIdentity()}
	// Defaults the caller may tune come first, then the caller's raw
	// options, then the mesh's own, which win: no option can swap mTLS for
	// something weaker or unhook authorization.
	mine := []grpc.ServerOption{
		grpc.Creds(newServerCredentials(tlsCfg, cfg.log, s.peers)),
		grpc.MaxConcurrentStreams(cfg.maxStreams),
	}
	var in *rpcotel.Instrumentation
	if t := cfg.telemetry; t != nil {
		if in, err = t.instrumentation(true); err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		// The span's interceptor, then the one that annotates it.
		unary = append(unary, in.UnaryServerInterceptor(), interceptors.UnaryServerTrace())
		stream = append(stream, in.StreamServerInterceptor(), interceptors.StreamServerTrace())
		if s.authz != nil {
			if s.authz, err = s.authz.WithTelemetry(t.TracerProvider, t.MeterProvider, t.Propagator, t.TrustRemote); err != nil {
				return nil, err
			}
		}
	}
	var taps []tap.ServerInHandle
	if in != nil {
		taps = append(taps, in.TapHandle())
	}
	if cfg.rateLimiter != nil {
		taps = append(taps, cfg.rateLimiter.TapHandle())
	}
	if s.authz != nil {
		taps = append(taps, s.authz.TapHandle())
	}
	if len(taps) > 0 {
		mine = append(mine, grpc.InTapHandle(interceptors.ChainTapHandles(taps...)))
	}
	mine = append(mine,
		grpc.ChainUnaryInterceptor(append(unary, cfg.unary...)...),
		grpc.ChainStreamInterceptor(append(stream, cfg.stream...)...))
	if err := checkServerOptions(cfg.grpcOptions); err != nil {
		return nil, err
	}
	// The workers go before the caller's raw options, so that
	// grpc.NumStreamWorkers given there wins, as documented.
	workers := DefaultStreamWorkers()
	if cfg.streamWorkers != nil {
		workers = *cfg.streamWorkers
	}
	s.gopts = slices.Concat(keepaliveDefaults, []grpc.ServerOption{grpc.NumStreamWorkers(workers)}, cfg.grpcOptions, mine)
	// The same options, with no workers even if the raw options ask for
	// some (grpc.NewServer starts them at once): what fails, fails now.
	noWorkers := []grpc.ServerOption{grpc.NumStreamWorkers(0)}
	if s.catalog, err = newGRPC(slices.Concat(keepaliveDefaults, cfg.grpcOptions, noWorkers, mine)); err != nil {
		return nil, err
	}
	s.catalog.Stop()
	healthpb.RegisterHealthServer(s, s.health)
	if !cfg.noReflection {
		ropts := reflection.ServerOptions{Services: s.catalog, DescriptorResolver: s.reflect, ExtensionResolver: s.reflect}
		reflectionv1.RegisterServerReflectionServer(s, reflection.NewServerV1(ropts))
		reflectionv1alpha.RegisterServerReflectionServer(s, reflection.NewServer(ropts))
	}
	return s, nil
}

// errServerCreds says that WithGRPCServerOptions tried to set the
// credentials.
var errServerCreds = errors.New("WithGRPCServerOptions: transport credentials are the mesh's mTLS; remove grpc.Creds from the server options")

// checkServerOptions fails when opts set transport credentials
// (grpc.Creds), which the mesh's own would replace: silently, before. A
// grpc.ServerOption cannot be inspected, so, as DialGRPC's
// checkDialOptions does, it builds a probe server with marker credentials
// followed by opts and hands it one connection whose other end is closed:
// the marker is asked to handshake only when no option replaced it. The
// probe runs no workers and is stopped before this returns.
func checkServerOptions(opts []grpc.ServerOption) error {
	if len(opts) == 0 {
		return nil
	}
	marker := &markerCredentials{handshake: make(chan struct{})}
	probe, err := newGRPC(slices.Concat([]grpc.ServerOption{grpc.Creds(marker)}, opts,
		[]grpc.ServerOption{grpc.NumStreamWorkers(0), grpc.ConnectionTimeout(2 * time.Second)}))
	if err != nil {
		return err
	}
	server, client := net.Pipe()
	_ = client.Close()
	ln := &oneConnListener{conn: &closeSignal{Conn: server, closed: make(chan struct{})}, done: make(chan struct{})}
	go func() { _ = probe.Serve(ln) }()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	select {
	case <-marker.handshake: // the mesh's credentials are the ones used
		probe.Stop()
		return nil
	case <-ln.conn.closed: // closed by grpc-go after another credentials' handshake
		probe.Stop()
		return fmt.Errorf("mesh: NewGRPCServer: %w", errServerCreds)
	case <-timeout.C:
		go probe.Stop() // a handshake that never returns must not hold NewGRPCServer
		return errors.New("mesh: NewGRPCServer: WithGRPCServerOptions: could not tell within 5s whether the options set transport credentials (a handshake neither ran the mesh's nor ended): remove grpc.Creds from them")
	}
}

// oneConnListener accepts conn once, then blocks until closed.
type oneConnListener struct {
	conn     *closeSignal
	accepted atomic.Bool
	done     chan struct{}
	once     sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.accepted.Swap(true) {
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// closeSignal is a net.Conn that says when it has been closed.
type closeSignal struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *closeSignal) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// registration is one RegisterService call, for the serving server.
type registration struct {
	desc *grpc.ServiceDesc
	impl any
}

// newGRPC is grpc.NewServer, with its panic on a second InTapHandle (the
// mesh's telemetry, rate limit and authorization use the only one) turned
// into an error.
func newGRPC(opts []grpc.ServerOption) (srv *grpc.Server, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("mesh: NewGRPCServer: %v (do not pass grpc.InTapHandle in WithGRPCServerOptions: the mesh's telemetry, rate limit and authorization use it)", p)
		}
	}()
	return grpc.NewServer(opts...), nil
}

// RegisterService registers a service implementation; it implements
// grpc.ServiceRegistrar so generated RegisterXServer functions accept it.
// Register every service before [GRPCServer.Check] or Serve: the checks
// Serve starts with cover only the services registered by then, and a
// registration once Serve has started panics (grpc-go would end the
// process). grpc-go's own checks (a duplicate service, an implementation
// of the wrong type) end the process as they do on a grpc.Server.
func (s *GRPCServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		panic(fmt.Sprintf("mesh: GRPCServer.RegisterService(%q) after Serve: register every service before Serve", desc.ServiceName))
	}
	s.catalog.RegisterService(desc, impl)
	s.regs = append(s.regs, registration{desc, impl})
}

// Check runs the checks Serve starts with, so that a program can fail
// before it opens a port: every served method is covered by an allow rule
// and every deny rule that applies here matches a served method (unless
// [WithCoverageWarnings]) and every registered service has a
// registered descriptor (for reflection). Register every service first.
func (s *GRPCServer) Check() error {
	if err := s.cfg.checkCoverage(s.Methods()); err != nil {
		return err
	}
	names := make([]string, 0, len(s.catalog.GetServiceInfo()))
	for name := range s.catalog.GetServiceInfo() {
		names = append(names, name)
	}
	return s.reflect.set(names)
}

// ListenAndServe runs [GRPCServer.Check], then listens on the TCP address
// addr and serves until ctx ends, like [GRPCServer.Serve].
func (s *GRPCServer) ListenAndServe(ctx context.Context, addr string) error {
	if err := s.Check(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mesh: grpc server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve runs [GRPCServer.Check] (closing ln if it fails), marks every
// registered service SERVING in grpc.health.v1 (NOT_SERVING while an SVID
// source such as certs.WorkloadSource has lost the workload's identity) and
// serves on ln until ctx
// ends; then it reports NOT_SERVING, stops gracefully within the shutdown
// timeout and returns nil. It returns the error that made it stop
// otherwise. A GRPCServer serves once: a second Serve is an error. While it serves, a policy reload that would leave a served
// method uncovered, or bring a deny rule that matches no served method, is
// rejected (see [WithAuthorizer]), and every connection
// ends when its peer's certificate expires or no longer verifies.
func (s *GRPCServer) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Check(); err != nil {
		_ = ln.Close()
		return err
	}
	srv, err := s.build()
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer srv.Stop() // on every way out: its workers and connections end
	release := s.cfg.guardReloads(s.authz, s.Methods())
	defer release()
	s.setServing(true)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.peers.watch(wctx, s.cfg.recheck, identity.Client)
	go followServing(wctx, s.svid, s.setServing)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("mesh: grpc server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(s.cfg.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("mesh: grpc server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// build makes the serving grpc.Server, with every registration, once.
func (s *GRPCServer) build() (*grpc.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		return nil, errors.New("mesh: GRPCServer.Serve called twice: a GRPCServer serves once (build another)")
	}
	srv, err := newGRPC(s.gopts)
	if err != nil {
		return nil, err
	}
	for _, r := range s.regs {
		srv.RegisterService(r.desc, r.impl)
	}
	s.server = srv
	return srv, nil
}

// setServing sets every registered service (and the server, "") SERVING or
// NOT_SERVING in grpc.health.v1.
func (s *GRPCServer) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for name := range s.catalog.GetServiceInfo() {
		s.health.SetServingStatus(name, st)
	}
	s.health.SetServingStatus("", st)
}

// Methods returns the full names ("/pkg.Service/Method") of every method the
// server serves, health and reflection included, sorted.
func (s *GRPCServer) Methods() []string {
	var out []string
	for svc, info := range s.catalog.GetServiceInfo() {
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	slices.Sort(out)
	return out
}
