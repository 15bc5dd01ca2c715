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
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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
	caEnv      = "MESHBENCH_CA"         // the directory of the CA (certs.CA.Save)
	profileEnv = "MESHBENCH_CPUPROFILE" // if set, the file of the server's CPU profile
)

const (
	inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
	gatewayID   = "spiffe://shop.example/ns/shop/sa/gateway"
)

// serveMain is a server process: it serves one configuration on
// 127.0.0.1, writes "ready ADDR" on stdout, answers "stats" on stdin with
// "stats OBJECTS BYTES" (heap allocations so far, from runtime/metrics)
// and stops when stdin closes.
func serveMain(stdin io.Reader, stdout io.Writer) error {
	cfg, err := parseConfig(os.Getenv(configEnv))
	if err != nil {
		return err
	}
	ca, err := certs.LoadCA(os.Getenv(caEnv))
	if err != nil {
		return fmt.Errorf("meshbench: serve: %w", err)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(inventoryID), DNSNames: []string{"localhost"}})
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
	serve, shutdown, err := newServer(ctx, cfg, ca, svid)
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

// newServer builds the server of cfg: serve serves on a listener until ctx
// ends; shutdown flushes the telemetry.
func newServer(ctx context.Context, cfg config, ca *certs.CA, svid *x509svid.SVID) (serve func(context.Context, net.Listener) error, shutdown func(context.Context) error, err error) {
	impl, err := benchsvc.Inventory()
	if err != nil {
		return nil, nil, fmt.Errorf("meshbench: serve: %w", err)
	}
	shutdown = func(context.Context) error { return nil }
	if cfg.mode == modeBare {
		tlsCfg := bareTLS(ca, svid)
		if cfg.stack == stackGRPC {
			srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
			inventoryv1.RegisterInventoryServiceServer(srv, impl)
			return func(ctx context.Context, ln net.Listener) error {
				go func() { <-ctx.Done(); srv.GracefulStop() }()
				return srv.Serve(ln)
			}, shutdown, nil
		}
		// With connect-go's default, a bare server gzips every response
		// for a client that accepts gzip, as this one does (the binary
		// links grpc-go's gzip through the OTLP gRPC exporter) and ghz
		// does: give it the mesh's threshold, for a like-for-like floor.
		mux := http.NewServeMux()
		mux.Handle(inventoryv1connect.NewInventoryServiceHandler(benchsvc.ConnectInventory(impl),
			connect.WithCompressMinBytes(mesh.CompressMinBytes)))
		srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
		return func(ctx context.Context, ln net.Listener) error {
			go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
			if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, shutdown, nil
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

// authorizer lets the gateway list the products and the operator do
// anything (so that every method is covered), auditing one allowed call
// in 100, as `shop serve` does by default.
func authorizer(log *slog.Logger) (*interceptors.Authorizer, error) {
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-lists", Effect: policy.Allow, From: []string{gatewayID}, To: []string{inventoryv1connect.InventoryServiceListProductsProcedure}},
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
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
		NextProtos: []string{"h2"},
	}
}

// The stacks and modes of a configuration.
const (
	stackGRPC    = "grpc-go"
	stackConnect = "connect-go"

	modeBare       = "bare"       // the stack alone, with mTLS
	modeOff        = "off"        // trustmesh, telemetry off
	modeUnsampled  = "unsampled"  // trustmesh, OTEL_TRACES_SAMPLER=always_off, metrics none: otelenv reports Off
	modeUndeclared = "undeclared" // the same, with the instrumentation installed anyway (Unsampled not set)
	modeAlwaysOn   = "always-on"  // trustmesh, every span sampled, batch export over OTLP/HTTP
)

// config is one server configuration: a stack and a mode.
type config struct{ stack, mode string }

func (c config) String() string { return c.stack + "/" + c.mode }

func parseConfig(s string) (config, error) {
	stack, mode, _ := strings.Cut(s, "/")
	c := config{stack: stack, mode: mode}
	if stack != stackGRPC && stack != stackConnect {
		return c, fmt.Errorf("meshbench: configuration %q: want %s/MODE or %s/MODE", s, stackGRPC, stackConnect)
	}
	switch mode {
	case modeBare, modeOff, modeUnsampled, modeUndeclared, modeAlwaysOn:
		return c, nil
	}
	return c, fmt.Errorf("meshbench: configuration %q: mode %q: want %s, %s, %s, %s or %s", s, mode, modeBare, modeOff, modeUnsampled, modeUndeclared, modeAlwaysOn)
}

// env is the OpenTelemetry environment of c's server process, exporting
// spans (if any) over OTLP/HTTP to sink.
func (c config) env(sink string) []string {
	env := []string{"OTEL_METRICS_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=" + sink, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
	switch c.mode {
	case modeUnsampled, modeUndeclared:
		return append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_off")
	case modeAlwaysOn:
		return append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_on")
	}
	return append(env, "OTEL_TRACES_EXPORTER=none")
}
