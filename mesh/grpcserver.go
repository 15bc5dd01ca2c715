package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/interceptors"
)

// GRPCServer is a grpc-go server behind mutual TLS, with health and
// reflection. Register services on it (it is a grpc.ServiceRegistrar) before
// calling Serve.
type GRPCServer struct {
	server *grpc.Server
	health *health.Server
	cfg    *serverConfig
}

var _ grpc.ServiceRegistrar = (*GRPCServer)(nil)

// NewGRPCServer builds a grpc-go server with the workload's credentials.
func NewGRPCServer(creds Credentials, opts ...ServerOption) (*GRPCServer, error) {
	cfg := newServerConfig(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tlsCfg, err := serverTLS(creds, cfg)
	if err != nil {
		return nil, err
	}
	// Recovery first, so a panic anywhere after it costs one call, not the
	// process.
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(grpcRecovery(cfg.log)), interceptors.UnaryServerIdentity()}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(grpcRecovery(cfg.log)), interceptors.StreamServerIdentity()}
	// The caller's raw options go first, so that the mesh's own credentials
	// come later and win: no option can swap mTLS for something weaker.
	gopts := append(slices.Clone(cfg.grpcOptions), grpc.Creds(newTransportCredentials(tlsCfg, cfg.log)))
	authz := cfg.authorizer
	if t := cfg.telemetry; t != nil {
		gopts = append(gopts, t.grpcServerHandler())
		unary = append(unary, interceptors.UnaryServerTrace())
		stream = append(stream, interceptors.StreamServerTrace())
		if authz != nil {
			var err error
			if authz, err = authz.WithTelemetry(t.TracerProvider, t.MeterProvider, t.Propagator); err != nil {
				return nil, err
			}
		}
	}
	var taps []tap.ServerInHandle
	if cfg.rateLimiter != nil {
		taps = append(taps, cfg.rateLimiter.TapHandle())
	}
	if authz != nil {
		taps = append(taps, authz.TapHandle())
	}
	if len(taps) > 0 {
		gopts = append(gopts, grpc.InTapHandle(interceptors.ChainTapHandles(taps...)))
	}
	gopts = append(gopts,
		grpc.ChainUnaryInterceptor(append(unary, cfg.unary...)...),
		grpc.ChainStreamInterceptor(append(stream, cfg.stream...)...))
	s := &GRPCServer{server: grpc.NewServer(gopts...), health: health.NewServer(), cfg: cfg}
	healthpb.RegisterHealthServer(s.server, s.health)
	reflection.Register(s.server) // v1 and v1alpha
	return s, nil
}

// serverTLS builds the TLS configuration shared by both server kinds.
func serverTLS(creds Credentials, cfg *serverConfig) (*tls.Config, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	if cfg.federated {
		// Verification needs a bundle for the caller's trust domain, so every
		// domain that passes it is one the credentials federate with.
		return ServerTLSConfig(creds, func(spiffeid.ID, [][]*x509.Certificate) error { return nil })
	}
	tds := cfg.trustDomains
	if len(tds) == 0 {
		svid, err := creds.SVID.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("mesh: read own SVID: %w", err)
		}
		tds = []spiffeid.TrustDomain{svid.ID.TrustDomain()}
	}
	return ServerTLSConfig(creds, AuthorizeMembers(tds...))
}

// RegisterService registers a service implementation; it implements
// grpc.ServiceRegistrar so generated RegisterXServer functions accept it.
func (s *GRPCServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.server.RegisterService(desc, impl)
}

// Server returns the underlying grpc-go server.
func (s *GRPCServer) Server() *grpc.Server { return s.server }

// Serve marks every registered service SERVING in grpc.health.v1 and serves
// on ln until ctx ends; then it reports NOT_SERVING, stops gracefully within
// the shutdown timeout and returns nil. It returns the error that made it stop
// otherwise.
func (s *GRPCServer) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.cfg.checkCoverage(s.Methods()); err != nil {
		_ = ln.Close()
		return err
	}
	for name := range s.server.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

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
