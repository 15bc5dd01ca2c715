package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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
	server  *grpc.Server
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

// NewGRPCServer builds a grpc-go server with the workload's credentials.
// Each client connection may hold [DefaultMaxConcurrentStreams] calls at
// once (see [WithMaxConcurrentStreams]).
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
	gopts := slices.Concat(keepaliveDefaults, cfg.grpcOptions, []grpc.ServerOption{
		grpc.Creds(newServerCredentials(tlsCfg, cfg.log, s.peers)),
		grpc.MaxConcurrentStreams(cfg.maxStreams),
	})
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
		gopts = append(gopts, grpc.InTapHandle(interceptors.ChainTapHandles(taps...)))
	}
	gopts = append(gopts,
		grpc.ChainUnaryInterceptor(append(unary, cfg.unary...)...),
		grpc.ChainStreamInterceptor(append(stream, cfg.stream...)...))
	if s.server, err = newGRPC(gopts); err != nil {
		return nil, err
	}
	healthpb.RegisterHealthServer(s.server, s.health)
	if !cfg.noReflection {
		ropts := reflection.ServerOptions{Services: s.server, DescriptorResolver: s.reflect, ExtensionResolver: s.reflect}
		reflectionv1.RegisterServerReflectionServer(s.server, reflection.NewServerV1(ropts))
		reflectionv1alpha.RegisterServerReflectionServer(s.server, reflection.NewServer(ropts))
	}
	return s, nil
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
// Register every service before [GRPCServer.Check] or Serve: grpc-go ends
// the process (log.Fatal) on a registration after Serve, and the checks
// Serve starts with cover only the services registered by then.
func (s *GRPCServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.server.RegisterService(desc, impl)
}

// Check runs the checks Serve starts with, so that a program can fail
// before it opens a port: every served method is covered by an allow rule
// (unless [WithCoverageWarnings]) and every registered service has a
// registered descriptor (for reflection). Register every service first.
func (s *GRPCServer) Check() error {
	if err := s.cfg.checkCoverage(s.Methods()); err != nil {
		return err
	}
	names := make([]string, 0, len(s.server.GetServiceInfo()))
	for name := range s.server.GetServiceInfo() {
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
// otherwise. While it serves, a policy reload that would leave a served
// method uncovered is rejected (see [WithAuthorizer]), and every connection
// ends when its peer's certificate expires or no longer verifies.
func (s *GRPCServer) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Check(); err != nil {
		_ = ln.Close()
		return err
	}
	release := s.cfg.guardReloads(s.authz, s.Methods())
	defer release()
	s.setServing(true)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.peers.watch(wctx, s.cfg.recheck, identity.Client)
	go followServing(wctx, s.svid, s.setServing)

	errc := make(chan error, 1)
	go func() { errc <- s.server.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("mesh: grpc server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.server.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(s.cfg.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.server.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("mesh: grpc server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// setServing sets every registered service (and the server, "") SERVING or
// NOT_SERVING in grpc.health.v1.
func (s *GRPCServer) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for name := range s.server.GetServiceInfo() {
		s.health.SetServingStatus(name, st)
	}
	s.health.SetServingStatus("", st)
}

// Methods returns the full names ("/pkg.Service/Method") of every method the
// server serves, health and reflection included, sorted.
func (s *GRPCServer) Methods() []string {
	var out []string
	for svc, info := range s.server.GetServiceInfo() {
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	slices.Sort(out)
	return out
}
