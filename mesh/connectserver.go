package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/trustmesh/trustmesh/interceptors"
)

// ConnectServer is a connect-go HTTP server behind mutual TLS: one port that
// speaks gRPC, gRPC-Web and Connect, with health and reflection for every
// mounted service. Mount handlers with Handle before calling Serve.
type ConnectServer struct {
	tls   *tls.Config
	cfg   *serverConfig
	authz *interceptors.Authorizer // nil without authorization

	mu       sync.Mutex
	mux      *http.ServeMux
	services []string
	started  bool
}

// NewConnectServer builds a connect-go server with the workload's
// credentials. Like grpc-go's default, it reads messages of at most 4 MiB: a
// larger one is refused with ResourceExhausted (connect-go itself sets no
// limit; pass connect.WithReadMaxBytes in [WithConnectHandlerOptions] to
// change it).
func NewConnectServer(creds Credentials, opts ...ServerOption) (*ConnectServer, error) {
	cfg := newServerConfig(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	own := []connect.HandlerOption{
		connect.WithReadMaxBytes(4 << 20), // as grpc-go: a larger message is refused with ResourceExhausted
		connectRecovery(cfg.log),          // a panic costs one call, not the process
	}
	authz := cfg.authorizer
	if t := cfg.telemetry; t != nil {
		otelInt, err := t.connectInterceptor()
		if err != nil {
			return nil, fmt.Errorf("mesh: telemetry: %w", err)
		}
		// otelconnect outside, so the span exists when the trace
		// interceptor records the caller, decision and chain on it.
		own = append(own, connect.WithInterceptors(otelInt, interceptors.ConnectServerTrace()))
		if authz != nil {
			var err error
			if authz, err = authz.WithTelemetry(t.TracerProvider, t.MeterProvider, t.Propagator); err != nil {
				return nil, err
			}
		}
	}
	if authz != nil {
		// The gate runs first, before any interceptor and before decoding.
		own = append([]connect.HandlerOption{authz.ConnectGate()}, own...)
	}
	if cfg.rateLimiter != nil {
		// Gates run in order: the rate limit before authorization.
		own = append([]connect.HandlerOption{cfg.rateLimiter.ConnectGate()}, own...)
	}
	cfg.connectOptions = append(own, cfg.connectOptions...)
	tlsCfg, err := serverTLS(creds, cfg)
	if err != nil {
		return nil, err
	}
	tlsCfg.NextProtos = []string{"h2", "http/1.1"} // Connect and gRPC-Web also work over HTTP/1.1
	return &ConnectServer{tls: tlsCfg, cfg: cfg, authz: authz, mux: http.NewServeMux()}, nil
}

// HandlerOptions returns the connect-go handler options of this server (its
// interceptors and gates); pass them to every generated NewXHandler.
func (s *ConnectServer) HandlerOptions() []connect.HandlerOption {
	return slices.Clone(s.cfg.connectOptions)
}

// Handle mounts a handler returned by a generated NewXHandler (whose path is
// "/package.Service/"); the service is then served health and reflection.
func (s *ConnectServer) Handle(path string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("mesh: ConnectServer.Handle called after Serve")
	}
	s.mux.Handle(path, h)
	if name := strings.Trim(path, "/"); name != "" && !strings.Contains(name, "/") {
		s.services = append(s.services, name)
	}
}

// Handler returns the server's complete HTTP handler: identity middleware in
// front of the mounted services, health and reflection. Serve uses it; tests
// can too.
func (s *ConnectServer) Handler() http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		opts := s.HandlerOptions()
		s.mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(s.services...), opts...))
		reflector := grpcreflect.NewStaticReflector(s.services...)
		s.mux.Handle(grpcreflect.NewHandlerV1(reflector, opts...))
		s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, opts...))
		if s.authz != nil {
			// Unknown procedures are authorized and audited like grpc-go's
			// unknown methods, instead of a silent 404.
			s.mux.Handle("/", s.authz.UnknownProcedureHandler())
		}
	}
	return interceptors.HTTPIdentity(s.mux)
}

// Serve serves on ln (TLS is applied here) until ctx ends; then it stops
// gracefully within the shutdown timeout and returns nil. It returns the
// error that made it stop otherwise.
func (s *ConnectServer) Serve(ctx context.Context, ln net.Listener) error {
	methods, err := s.Methods()
	if err == nil {
		err = s.cfg.checkCoverage(methods)
	}
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tls,
		ConnContext:       interceptors.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.log.Handler(), slog.LevelWarn),
	}
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
	out = append(out, ConnectStandardMethods()...)
	slices.Sort(out)
	return out, nil
}
