package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/bench/internal/benchsvc"
	"github.com/trustmesh/trustmesh/certs"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/gen/shop/inventory/v1/inventoryv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// The environment a server process gets from the driver.
const (
	roleEnv    = "MESHBENCH_ROLE"       // "serve": this process is a server
	configEnv  = "MESHBENCH_CONFIG"     // the configuration, e.g. "grpc-go/off"
	caEnv      = "MESHBENCH_CA"         // the directory of the CA and the sample's SVIDs (sample.InitCerts)
	profileEnv = "MESHBENCH_CPUPROFILE" // if set, the file of the server's CPU profile
	serviceEnv = "MESHBENCH_SERVICE"    // placeorder/bare: the sample service this process is
	addrsEnv   = "MESHBENCH_ADDRS"      // placeorder/bare: its downstreams' addresses, NAME=ADDR,...
)

const (
	inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
	gatewayID   = "spiffe://shop.example/ns/shop/sa/gateway"
)

// serveMain is a server process: it serves one configuration on
// 127.0.0.1 (for placeorder/bare, one of its four services: the
// MESHBENCH_SERVICE one), writes "ready ADDR" on stdout, answers "stats"
// on stdin with "stats OBJECTS BYTES" (heap allocations so far, from
// runtime/metrics) and stops when stdin closes.
func serveMain(stdin io.Reader, stdout io.Writer) error {
	cfg, err := parseConfig(os.Getenv(configEnv))
	if err != nil {
		return err
	}
	ca, err := certs.LoadCA(os.Getenv(caEnv))
	if err != nil {
		return fmt.Errorf("meshbench: serve: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("meshbench: serve: %w", err)
	}
	if path := os.Getenv(profileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("meshbench: serve: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("meshbench: serve: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		// and, beside it, the allocations (go tool pprof -sample_index=alloc_objects)
		defer func() {
			if m, err := os.Create(strings.TrimSuffix(path, ".pprof") + ".allocs.pprof"); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(m, 0)
				_ = m.Close()
			}
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serve func(context.Context, net.Listener) error
	var shutdown func(context.Context) error
	if cfg.stack == stackPlaceOrder {
		serve, shutdown, err = newFanoutServer(ctx, os.Getenv(serviceEnv), os.Getenv(caEnv), ca, os.Getenv(addrsEnv))
	} else {
		serve, shutdown, err = newServer(ctx, cfg, ca)
	}
	if err != nil {
		_ = ln.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	fmt.Fprintf(stdout, "ready %s\n", ln.Addr())

	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "stats":
			objects, bytes := heapAllocs()
			fmt.Fprintf(stdout, "stats %d %d\n", objects, bytes)
		default:
			fmt.Fprintf(stdout, "error unknown command %q\n", sc.Text())
		}
	}
	cancel()
	err = <-done
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return errors.Join(err, shutdown(sctx))
}

// heapAllocs returns the heap allocations of the process so far: objects
// and bytes.
func heapAllocs() (objects, bytes uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// newServer builds the server of the per-hop configuration cfg: serve
// serves on a listener until ctx ends; shutdown flushes the telemetry.
// Every such server serves the inventory's ListProducts and
// grpc.health.v1 (bare servers: grpc-go's health server, connect-go's
// grpchealth; trustmesh serves health itself).
func newServer(ctx context.Context, cfg config, ca *certs.CA) (serve func(context.Context, net.Listener) error, shutdown func(context.Context) error, err error) {
	if cfg.stack != stackGRPC && cfg.stack != stackConnect || cfg.mode == modeShop {
		return nil, nil, fmt.Errorf("meshbench: serve: configuration %s is not served by meshbench", cfg)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(inventoryID), DNSNames: []string{"localhost"}})
	if err != nil {
		return nil, nil, fmt.Errorf("meshbench: serve: %w", err)
	}
	impl, err := benchsvc.Inventory()
	if err != nil {
		return nil, nil, fmt.Errorf("meshbench: serve: %w", err)
	}
	shutdown = func(context.Context) error { return nil }
	if cfg.mode == modeBare || cfg.mode == modeWorkers {
		tlsCfg := bareTLS(ca, svid)
		if cfg.stack == stackGRPC {
			gopts := []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))}
			if cfg.mode == modeWorkers {
				gopts = append(gopts, grpc.NumStreamWorkers(mesh.DefaultStreamWorkers()))
			}
			srv := grpc.NewServer(gopts...)
			inventoryv1.RegisterInventoryServiceServer(srv, impl)
			healthpb.RegisterHealthServer(srv, health.NewServer()) // "" is SERVING
			return serveGRPC(srv), shutdown, nil
		}
		// With connect-go's default, a bare server gzips every response
		// for a client that accepts gzip, as this one does (the binary
		// links grpc-go's gzip through the OTLP gRPC exporter) and ghz
		// does: give it the mesh's threshold, for a like-for-like floor.
		compress := connect.WithCompressMinBytes(mesh.CompressMinBytes)
		mux := http.NewServeMux()
		mux.Handle(inventoryv1connect.NewInventoryServiceHandler(benchsvc.ConnectInventory(impl), compress))
		checker := grpchealth.NewStaticChecker(inventoryv1connect.InventoryServiceName)
		checker.SetStatus("", grpchealth.StatusServing)
		mux.Handle(grpchealth.NewHandler(checker, compress))
		return serveHTTP(mux, tlsCfg), shutdown, nil
	}

	// trustmesh: the sample's defaults (1 allow in 100 audited; the audit
	// and server logs formatted as JSON, written nowhere).
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	authz, err := authorizer(log)
	if err != nil {
		return nil, nil, err
	}
	opts := []mesh.ServerOption{mesh.WithAuthorizer(authz), mesh.WithLogger(log)}
	if cfg.mode != modeOff {
		// The environment the driver set (see config.env) decides, as in
		// `shop serve`.
		p, err := otelenv.Setup(ctx, "inventory", "meshbench", otelenv.WithoutGlobal())
		if err != nil {
			return nil, nil, err
		}
		shutdown = p.Shutdown
		unsampled := p.Off()
		if cfg.mode == modeUnsampled && !unsampled {
			return nil, nil, fmt.Errorf("meshbench: serve %s: otelenv does not report the set-up off", cfg)
		}
		if cfg.mode == modeUndeclared {
			unsampled = false // the instrumentation runs and drops every span
		}
		opts = append(opts, mesh.WithTelemetry(mesh.Telemetry{TracerProvider: p.TracerProvider, MeterProvider: p.MeterProvider,
			Propagator: p.Propagator, TrustRemote: true, Unsampled: unsampled}))
	}
	creds := mesh.Credentials{SVID: svid, Bundles: ca.Bundle()}
	if cfg.stack == stackGRPC {
		srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
		if err != nil {
			return nil, nil, err
		}
		inventoryv1.RegisterInventoryServiceServer(srv, impl)
		return srv.Serve, shutdown, nil
	}
	srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
	if err != nil {
		return nil, nil, err
	}
	if err := mesh.Mount(srv, inventoryv1connect.NewInventoryServiceHandler, benchsvc.ConnectInventory(impl)); err != nil {
		return nil, nil, err
	}
	return srv.Serve, shutdown, nil
}

// serveGRPC serves srv on a listener until ctx ends, then stops it
// gracefully.
func serveGRPC(srv *grpc.Server) func(context.Context, net.Listener) error {
	return func(ctx context.Context, ln net.Listener) error {
		go func() { <-ctx.Done(); srv.GracefulStop() }()
		return srv.Serve(ln)
	}
}

// serveHTTP serves h over TLS with tlsCfg on a listener until ctx ends,
// then shuts down.
func serveHTTP(h http.Handler, tlsCfg *tls.Config) func(context.Context, net.Listener) error {
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	return func(ctx context.Context, ln net.Listener) error {
		go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// authorizer lets the gateway list the products and check the server's
// health (as the sample's policy lets it at inventory) and the operator do
// anything (so that every method is covered), auditing one allowed call
// in 100, as `shop serve` does by default.
func authorizer(log *slog.Logger) (*interceptors.Authorizer, error) {
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-lists", Effect: policy.Allow, From: []string{gatewayID}, To: []string{inventoryv1connect.InventoryServiceListProductsProcedure}},
		{Name: "gateway-checks-health", Effect: policy.Allow, From: []string{gatewayID}, To: []string{"/grpc.health.v1.Health/Check"}},
		{Name: "admin", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/ops/sa/admin"}, To: []string{"*"}},
	}})
	if err != nil {
		return nil, fmt.Errorf("meshbench: policy: %w", err)
	}
	return interceptors.NewAuthorizer(e, interceptors.WithAuditLogger(log), interceptors.WithAuditAllows(100))
}

// bareTLS is what a bare server does: TLS 1.3, client certificates
// verified by crypto/tls against the CA, nothing else.
func bareTLS(ca *certs.CA, svid *x509svid.SVID) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tlsCert(svid)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
		NextProtos: []string{"h2"},
	}
}

// tlsCert is svid as a crypto/tls certificate.
func tlsCert(svid *x509svid.SVID) tls.Certificate {
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}
