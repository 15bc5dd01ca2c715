package shop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	gatewayv1connect "github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	gatewayv2connect "github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	paymentsv1connect "github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/internal/validation"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
)

// Serve runs service name on ln until ctx ends, then stops it gracefully.
// Its downstreams are reached at cfg.Addrs and must prove their workload
// SPIFFE IDs.
func Serve(ctx context.Context, name string, ln net.Listener, cfg Config) error {
	if err := checkName(name); err != nil {
		return err
	}
	defer func() { _ = ln.Close() }() // already closed after a clean stop; this covers start-up errors
	cfg = cfg.withDefaults()
	s := &service{name: name, cfg: cfg, log: cfg.Log.With(slog.String("service", name)), meters: otel.GetMeterProvider()}
	defer s.close()
	// Telemetry first, so that the credential source's expiry gauge and the
	// policy watcher's reload metrics go to this service's meter provider.
	if err := s.setUpTelemetry(ctx); err != nil {
		return err
	}
	if err := s.openCredentials(ctx); err != nil {
		return err
	}
	if err := s.setUpAuthorization(ctx); err != nil {
		return err
	}
	switch name {
	case Inventory:
		return s.serveInventory(ctx, ln)
	case Payments:
		return s.servePayments(ctx, ln)
	case Orders:
		return s.serveOrders(ctx, ln)
	case Gateway:
		return s.serveGateway(ctx, ln)
	}
	return checkName(name)
}

// service is one sample service being built by [Serve]: what it has set up
// so far, and what to close when it stops.
type service struct {
	name       string
	cfg        Config
	log        *slog.Logger
	meters     metric.MeterProvider
	opts       []mesh.ServerOption
	clientOpts []mesh.ClientOption
	creds      mesh.Credentials
	az         *authorization
	closers    []func() error
}

// close closes what the service opened, last opened first.
func (s *service) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
}

// errorf wraps err as "shop: NAME: err".
func (s *service) errorf(err error) error { return fmt.Errorf("shop: %s: %w", s.name, err) }

// setUpTelemetry gets the service's OpenTelemetry providers from
// cfg.Telemetry, if set, for its server, its clients and its meters; they
// are shut down, flushing every span, when the service stops.
func (s *service) setUpTelemetry(ctx context.Context) error {
	s.opts = append(s.opts, mesh.WithLogger(s.log))
	if s.cfg.Telemetry == nil {
		return nil
	}
	p, err := s.cfg.Telemetry(s.name)
	if err != nil {
		return s.errorf(err)
	}
	s.closers = append(s.closers, func() error {
		// Flush every span, also when ctx is already cancelled (SIGTERM).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return p.Shutdown(sctx)
	})
	t := mesh.Telemetry{TracerProvider: p.TracerProvider, MeterProvider: p.MeterProvider, Propagator: p.Propagator,
		TrustRemote: s.name != Gateway, // the gateway is the edge: people's traces start there
		Unsampled:   p.Off()}           // OTEL_*_EXPORTER=none (or a sampler that never samples, no metrics): off
	s.opts = append(s.opts, mesh.WithTelemetry(t))
	s.clientOpts = append(s.clientOpts, mesh.WithClientTelemetry(t))
	s.meters = p.MeterProvider
	return nil
}

// openCredentials opens the service's live SVID and trust bundles (see
// [OpenCredentials]).
func (s *service) openCredentials(ctx context.Context) error {
	creds, closeCreds, err := openCredentials(ctx, s.cfg, s.name, s.meters)
	if err != nil {
		return err
	}
	s.creds = creds
	s.closers = append(s.closers, closeCreds)
	return nil
}

// setUpAuthorization loads the service's policy and adds to its server
// options what decides who may call it: the authorizer (minting
// transaction tokens at the gateway, verifying them elsewhere), coverage warnings
// (cfg.AllowUncovered), federated trust domains (cfg.FederationDir) and,
// at the gateway, the per-caller rate limit (cfg.RateLimit).
func (s *service) setUpAuthorization(ctx context.Context) error {
	az, err := newAuthorization(ctx, s.name, s.cfg, s.creds, s.log, s.meters)
	if err != nil {
		return err
	}
	s.az = az
	s.closers = append(s.closers, az.close)
	s.opts = append(s.opts, mesh.WithAuthorizer(az.authorizer))
	if s.cfg.AllowUncovered {
		s.opts = append(s.opts, mesh.WithCoverageWarnings())
	}
	if s.cfg.FederationDir != "" {
		s.opts = append(s.opts, mesh.WithFederatedTrustDomains())
	}
	if s.cfg.RateLimit != 0 && s.rateLimited() {
		burst := s.cfg.RateBurst
		if burst == 0 {
			burst = max(1, int(2*s.cfg.RateLimit))
		}
		l, err := interceptors.NewRateLimiter(s.cfg.RateLimit, burst)
		if err != nil {
			return s.errorf(err)
		}
		s.opts = append(s.opts, mesh.WithRateLimiter(l))
	}
	return nil
}

// dialGRPC connects to the grpc-go service downstream, which must present
// its workload ID; the connection is closed when the service stops.
func (s *service) dialGRPC(downstream string) (*grpc.ClientConn, error) {
	conn, err := mesh.DialGRPC(s.cfg.Addrs[downstream], s.creds, WorkloadID(downstream), mesh.WithClientOptions(s.clientOpts...))
	if err != nil {
		return nil, s.errorf(err)
	}
	s.closers = append(s.closers, conn.Close)
	return conn, nil
}

// rateLimited reports whether the config's rate limit applies to this
// service.
func (s *service) rateLimited() bool {
	if s.cfg.RateLimited == nil {
		return s.name == Gateway
	}
	return slices.Contains(s.cfg.RateLimited, s.name)
}

// serveGRPC builds the service's grpc-go server, registers its
// implementation with register and serves it on ln.
func (s *service) serveGRPC(ctx context.Context, ln net.Listener, register func(*mesh.GRPCServer)) error {
	validate, err := validation.GRPC() // the protos' buf.validate rules, after authorization
	if err != nil {
		return s.errorf(err)
	}
	srv, err := mesh.NewGRPCServer(s.creds, mesh.WithServerOptions(s.opts...), validate)
	if err != nil {
		return s.errorf(err)
	}
	register(srv)
	return logServe(ctx, s.log, ln, srv.Serve)
}

// newConnectServer builds the service's connect-go server.
func (s *service) newConnectServer() (*mesh.ConnectServer, error) {
	validate, err := validation.Connect() // the protos' buf.validate rules, after authorization
	if err != nil {
		return nil, s.errorf(err)
	}
	srv, err := mesh.NewConnectServer(s.creds, mesh.WithServerOptions(s.opts...), validate)
	if err != nil {
		return nil, s.errorf(err)
	}
	return srv, nil
}

func (s *service) serveInventory(ctx context.Context, ln net.Listener) error {
	var catalogue []*inventoryv1.Product
	if s.cfg.Stock > 0 {
		catalogue = inventory.DefaultCatalogue()
		for _, p := range catalogue {
			p.AvailableQuantity = s.cfg.Stock
		}
	}
	impl, err := inventory.New(inventory.Config{Catalogue: catalogue}, s.log)
	if err != nil {
		return s.errorf(err)
	}
	return s.serveGRPC(ctx, ln, func(srv *mesh.GRPCServer) { inventoryv1.RegisterInventoryServiceServer(srv, impl) })
}

func (s *service) servePayments(ctx context.Context, ln net.Listener) error {
	impl := payments.New(payments.Config{Limit: s.cfg.PaymentLimit}, s.log)
	srv, err := s.newConnectServer()
	if err != nil {
		return err
	}
	if err := mesh.Mount(srv, paymentsv1connect.NewPaymentServiceHandler, impl); err != nil {
		return s.errorf(err)
	}
	return serveConnect(ctx, s.log, ln, srv)
}

func (s *service) serveOrders(ctx context.Context, ln net.Listener) error {
	invConn, err := s.dialGRPC(Inventory)
	if err != nil {
		return err
	}
	httpClient, err := mesh.NewHTTPClient(s.creds, WorkloadID(Payments))
	if err != nil {
		return s.errorf(err)
	}
	connectOpts, err := mesh.ConnectClientOptions(s.creds, mesh.WithClientOptions(s.clientOpts...))
	if err != nil {
		return s.errorf(err)
	}
	pay := paymentsv1connect.NewPaymentServiceClient(httpClient, "https://"+s.cfg.Addrs[Payments], append(connectOpts, connect.WithGRPC())...)
	step := s.cfg.StepInterval
	if step == 0 {
		step = orders.DefaultStepInterval
	}
	impl, err := orders.New(orders.Config{StepInterval: step}, inventoryv1.NewInventoryServiceClient(invConn), pay, s.log)
	if err != nil {
		return s.errorf(err)
	}
	// Closing orders ends its open WatchOrder streams, which a graceful
	// stop would otherwise wait for: close it as soon as ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = impl.Close() })
	s.closers = append(s.closers, func() error { stop(); return impl.Close() })
	return s.serveGRPC(ctx, ln, func(srv *mesh.GRPCServer) { ordersv1.RegisterOrderServiceServer(srv, impl) })
}

func (s *service) serveGateway(ctx context.Context, ln net.Listener) error {
	ordConn, err := s.dialGRPC(Orders)
	if err != nil {
		return err
	}
	invConn, err := s.dialGRPC(Inventory)
	if err != nil {
		return err
	}
	impl, err := gateway.New(gateway.Config{}, ordersv1.NewOrderServiceClient(ordConn), inventoryv1.NewInventoryServiceClient(invConn), s.log)
	if err != nil {
		return s.errorf(err)
	}
	srv, err := s.newConnectServer()
	if err != nil {
		return err
	}
	if err := mesh.Mount(srv, gatewayv1connect.NewStorefrontServiceHandler, impl); err != nil {
		return s.errorf(err)
	}
	if err := mesh.Mount(srv, gatewayv2connect.NewStorefrontServiceHandler, gateway.NewV2(impl)); err != nil {
		return s.errorf(err)
	}
	return serveConnect(ctx, s.log, ln, srv)
}

func serveConnect(ctx context.Context, log *slog.Logger, ln net.Listener, srv *mesh.ConnectServer) error {
	return logServe(ctx, log, ln, srv.Serve)
}

// readyKey carries, from Start, the function a service calls once it is
// built and about to serve.
type readyKey struct{}

func logServe(ctx context.Context, log *slog.Logger, ln net.Listener, serve func(context.Context, net.Listener) error) error {
	if ready, ok := ctx.Value(readyKey{}).(func()); ok {
		ready()
	}
	log.Info("serving", slog.String("addr", ln.Addr().String()))
	err := serve(ctx, ln)
	log.Info("stopped", slog.Any("error", err))
	return err
}

// Mesh is the sample mesh running in this process, started by [Start].
type Mesh struct {
	// Addrs maps each service to the address it listens on.
	Addrs map[string]string
	// CertDir is where the services' certificates are.
	CertDir string

	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// Start binds every service's address (all before serving any, so a busy
// port fails at once), starts all four services and returns once each has
// loaded its credentials and policy and is serving; they serve until ctx
// ends. Addresses with port 0 get a free port; Mesh.Addrs tells which. If a
// service fails to start, Start stops the others and returns the errors.
func Start(ctx context.Context, cfg Config) (*Mesh, error) {
	cfg = cfg.withDefaults()
	lns := make(map[string]net.Listener, len(Services))
	for _, s := range Services {
		ln, err := net.Listen("tcp", cfg.Addrs[s])
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("shop: %s: listen: %w", s, err)
		}
		lns[s] = ln
		cfg.Addrs[s] = ln.Addr().String()
	}
	m := &Mesh{Addrs: cfg.Addrs, CertDir: cfg.CertDir}
	// A service that fails stops the whole mesh.
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{}, len(Services))
	sctx := context.WithValue(ctx, readyKey{}, func() { ready <- struct{}{} })
	for _, s := range Services {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := Serve(sctx, s, lns[s], cfg); err != nil {
				m.mu.Lock()
				m.errs = append(m.errs, err)
				m.mu.Unlock()
				cancel()
			}
		}()
	}
	go func() { m.wg.Wait(); cancel() }()
	for range Services {
		select {
		case <-ready:
		case <-ctx.Done():
			if err := m.Wait(); err != nil {
				return nil, err
			}
			return nil, ctx.Err()
		}
	}
	return m, nil
}

// Wait blocks until every service has stopped and returns their errors.
func (m *Mesh) Wait() error {
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(m.errs...)
}
