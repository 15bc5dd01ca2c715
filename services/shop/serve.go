package shop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	log := cfg.Log.With(slog.String("service", name))
	var closers []func() error
	defer func() { // last opened, first closed
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}()

	// Telemetry first, so that the credential source's expiry gauge and the
	// policy watcher's reload metrics go to this service's meter provider.
	var (
		opts       = []mesh.ServerOption{mesh.WithLogger(log)}
		clientOpts []mesh.ClientOption
		meters     metric.MeterProvider = otel.GetMeterProvider()
	)
	if cfg.Telemetry != nil {
		p, err := cfg.Telemetry(name)
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		closers = append(closers, func() error {
			// Flush every span, also when ctx is already cancelled (SIGTERM).
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return p.Shutdown(sctx)
		})
		t := mesh.Telemetry{TracerProvider: p.TracerProvider, MeterProvider: p.MeterProvider, Propagator: p.Propagator,
			TrustRemote: name != Gateway} // the gateway is the edge: people's traces start there
		opts = append(opts, mesh.WithTelemetry(t))
		clientOpts = append(clientOpts, mesh.WithClientTelemetry(t))
		meters = p.MeterProvider
	}

	creds, closeCreds, err := openCredentials(ctx, cfg, name, meters)
	if err != nil {
		return err
	}
	closers = append(closers, closeCreds)
	az, err := newAuthorization(ctx, name, cfg, log, meters)
	if err != nil {
		return err
	}
	closers = append(closers, az.close)
	opts = append(opts, mesh.WithAuthorizer(az.authorizer))
	if cfg.AllowUncovered {
		opts = append(opts, mesh.WithCoverageWarnings())
	}
	if cfg.FederationDir != "" {
		opts = append(opts, mesh.WithFederatedTrustDomains())
	}
	if name == Gateway && cfg.RateLimit != 0 {
		burst := cfg.RateBurst
		if burst == 0 {
			burst = max(1, int(2*cfg.RateLimit))
		}
		l, err := interceptors.NewRateLimiter(cfg.RateLimit, burst)
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		opts = append(opts, mesh.WithRateLimiter(l))
	}
	grpcClient := func(downstream string) (*grpc.ClientConn, error) {
		conn, err := mesh.DialGRPC(cfg.Addrs[downstream], creds, WorkloadID(downstream), mesh.WithClientOptions(clientOpts...))
		if err != nil {
			return nil, fmt.Errorf("shop: %s: %w", name, err)
		}
		closers = append(closers, conn.Close)
		return conn, nil
	}

	switch name {
	case Inventory:
		var catalogue []*inventoryv1.Product
		if cfg.Stock > 0 {
			catalogue = inventory.DefaultCatalogue()
			for _, p := range catalogue {
				p.AvailableQuantity = cfg.Stock
			}
		}
		impl, err := inventory.New(inventory.Config{Catalogue: catalogue}, log)
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		inventoryv1.RegisterInventoryServiceServer(srv, impl)
		return logServe(ctx, log, ln, srv.Serve)

	case Payments:
		impl := payments.New(payments.Config{Limit: cfg.PaymentLimit}, log)
		srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		if err := mesh.Mount(srv, paymentsv1connect.NewPaymentServiceHandler, impl); err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		return serveConnect(ctx, log, ln, srv)

	case Orders:
		invConn, err := grpcClient(Inventory)
		if err != nil {
			return err
		}
		httpClient, err := mesh.NewHTTPClient(creds, WorkloadID(Payments))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		connectOpts, err := mesh.ConnectClientOptions(creds, mesh.WithClientOptions(clientOpts...))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		pay := paymentsv1connect.NewPaymentServiceClient(httpClient, "https://"+cfg.Addrs[Payments], append(connectOpts, connect.WithGRPC())...)
		step := cfg.StepInterval
		if step == 0 {
			step = orders.DefaultStepInterval
		}
		impl, err := orders.New(orders.Config{StepInterval: step}, inventoryv1.NewInventoryServiceClient(invConn), pay, log)
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		// Closing orders ends its open WatchOrder streams, which a graceful
		// stop would otherwise wait for: close it as soon as ctx ends.
		stop := context.AfterFunc(ctx, func() { _ = impl.Close() })
		closers = append(closers, func() error { stop(); return impl.Close() })
		srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		ordersv1.RegisterOrderServiceServer(srv, impl)
		return logServe(ctx, log, ln, srv.Serve)

	case Gateway:
		ordConn, err := grpcClient(Orders)
		if err != nil {
			return err
		}
		invConn, err := grpcClient(Inventory)
		if err != nil {
			return err
		}
		impl, err := gateway.New(gateway.Config{}, ordersv1.NewOrderServiceClient(ordConn), inventoryv1.NewInventoryServiceClient(invConn), log)
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
		if err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		if err := mesh.Mount(srv, gatewayv1connect.NewStorefrontServiceHandler, impl); err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		if err := mesh.Mount(srv, gatewayv2connect.NewStorefrontServiceHandler, gateway.NewV2(impl)); err != nil {
			return fmt.Errorf("shop: %s: %w", name, err)
		}
		return serveConnect(ctx, log, ln, srv)
	}
	return checkName(name)
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
