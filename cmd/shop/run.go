package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/version"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
	"github.com/trustmesh/trustmesh/telemetry/tracetree"
	"github.com/trustmesh/trustmesh/tokens"
)

const usage = `shop runs the trustmesh sample mesh (gateway, orders, inventory, payments)
over mutual TLS with SPIFFE identities.

Usage:
  shop up [flags]          run all four services on loopback in this process
  shop serve NAME [flags]  run one service: gateway, orders, inventory or payments
  shop traces [flags]      receive OTLP (gRPC or HTTP) and print each trace as a tree
  shop healthcheck [flags] check a service's grpc.health.v1 status over mTLS (exit 0 if SERVING)
  shop version             print the version

Run 'shop up -h' or 'shop serve -h' for the flags. Every flag can also be set
through the environment variable named in its help (flags win).
`

// errUsage marks errors that are the caller's mistake (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "shop: %v\n", strings.TrimSuffix(err.Error(), ": "+errUsage.Error()))
		return 2
	default:
		// Errors from package shop already carry its "shop: " prefix.
		fmt.Fprintf(stderr, "shop: %s\n", strings.TrimPrefix(err.Error(), "shop: "))
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given: %w", errUsage)
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:], stdout, stderr)
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stdout, stderr)
	case "traces":
		return tracesCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q (want up, serve, traces or version; see 'shop help'): %w", args[0], errUsage)
	}
}

// common holds the flags shared by up and serve.
type common struct {
	certDir      string
	addrs        map[string]*string
	paymentLimit int64
	stepInterval time.Duration
	logLevel     string
	policyFile   string
	uncovered    bool
	auditAllows  uint64
	spiffeSocket string
	federation   string
	rateLimit    float64
	rateBurst    int
	tokenJWKS    string
}

func (c *common) register(fs *flag.FlagSet, addrHelp string) {
	fs.StringVar(&c.certDir, "cert-dir", filepath.Join("certs", "dev"),
		"directory with bundle.pem and each service's NAME.pem / NAME-key.pem (env SHOP_CERT_DIR)")
	c.addrs = map[string]*string{}
	for _, s := range shop.Services {
		env := "SHOP_" + strings.ToUpper(s) + "_ADDR"
		c.addrs[s] = fs.String(s+"-addr", shop.DefaultAddrs[s], fmt.Sprintf("%s %s (env %s)", s, addrHelp, env))
	}
	fs.Int64Var(&c.paymentLimit, "payment-limit", 0,
		"largest charge payments accepts, in minor units; 0 = the service default (env SHOP_PAYMENT_LIMIT)")
	fs.DurationVar(&c.stepInterval, "step-interval", 0,
		"time between an order's later statuses (shipped, delivered); 0 = the service default (env SHOP_STEP_INTERVAL)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error (env SHOP_LOG_LEVEL)")
	fs.StringVar(&c.policyFile, "policy", filepath.Join("services", "policy.yaml"),
		"authorization policy file, merged with the rules in the protos and reloaded on change (env SHOP_POLICY)")
	fs.BoolVar(&c.uncovered, "allow-uncovered", false,
		"only warn, instead of refusing to start (or a reload), when a served method has no allow rule or a deny rule matches no served method (env SHOP_ALLOW_UNCOVERED)")
	fs.Uint64Var(&c.auditAllows, "audit-allows", 100,
		"audit one allowed call in every N (1: all, 0: none); denials are always audited (env SHOP_AUDIT_ALLOWS)")
	fs.StringVar(&c.spiffeSocket, "spiffe-socket", "",
		"SPIFFE Workload API socket (e.g. unix:///run/spire/agent.sock): take SVIDs and bundles from SPIRE instead of --cert-dir (env SPIFFE_ENDPOINT_SOCKET)")
	fs.StringVar(&c.federation, "federation-dir", "",
		"directory of TRUST_DOMAIN.pem bundles of federated trust domains, watched; their members may connect and are authorized by policy (env SHOP_FEDERATION_DIR)")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0,
		"calls per second allowed to each caller SPIFFE ID, at the gateway (up) or at the service served (serve NAME); 0 = no limit (env SHOP_RATE_LIMIT)")
	fs.IntVar(&c.rateBurst, "rate-burst", 0,
		"burst of calls allowed above --rate-limit; 0 = twice the rate (env SHOP_RATE_BURST)")
	fs.StringVar(&c.tokenJWKS, "token-jwks", "",
		"JWKS file of the issuer of cert-bound tokens that policy rules with require_token ask for; default: token-jwks.json in --cert-dir (env SHOP_TOKEN_JWKS)")
}

func (c *common) config(stderr io.Writer) (shop.Config, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return shop.Config{}, fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", c.logLevel, errUsage)
	}
	if c.paymentLimit < 0 {
		return shop.Config{}, fmt.Errorf("--payment-limit %d: must not be negative: %w", c.paymentLimit, errUsage)
	}
	if c.stepInterval < 0 {
		return shop.Config{}, fmt.Errorf("--step-interval %s: must not be negative: %w", c.stepInterval, errUsage)
	}
	if c.rateLimit < 0 {
		return shop.Config{}, fmt.Errorf("--rate-limit %g: must not be negative: %w", c.rateLimit, errUsage)
	}
	if c.rateBurst < 0 || (c.rateBurst > 0 && c.rateLimit == 0) {
		return shop.Config{}, fmt.Errorf("--rate-burst %d: must be positive, with a --rate-limit: %w", c.rateBurst, errUsage)
	}
	addrs := map[string]string{}
	for s, a := range c.addrs {
		if _, _, err := net.SplitHostPort(*a); err != nil {
			return shop.Config{}, fmt.Errorf("--%s-addr %q: want host:port: %w", s, *a, errUsage)
		}
		addrs[s] = *a
	}
	return shop.Config{
		CertDir:        c.certDir,
		Addrs:          addrs,
		PaymentLimit:   c.paymentLimit,
		StepInterval:   c.stepInterval,
		PolicyFile:     c.policyFile,
		AllowUncovered: c.uncovered,
		AuditAllows:    c.auditAllows,
		SPIFFESocket:   c.spiffeSocket,
		FederationDir:  c.federation,
		RateLimit:      c.rateLimit,
		RateBurst:      c.rateBurst,
		TokenJWKSFile:  c.tokenJWKS,
		Log:            slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}, nil
}

func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, help)
		fs.PrintDefaults()
	}
	return fs
}

// parse applies the environment (each flag's help names its variable as
// "(env NAME)"), then the arguments, which win.
func parse(fs *flag.FlagSet, args []string) error {
	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%s: %v: %w", fs.Name(), err, errUsage)
	}
	return nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var c common
	fs := newFlagSet("up", "Usage: shop up [flags]\n\nRuns gateway, orders, inventory and payments on loopback, each with its own\nSVID from --cert-dir (created with the development CA if missing, like the\ndevelopment token issuer's key).\n\nFlags:\n", stderr)
	c.register(fs, "listen address")
	sp := registerSPIREFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	// OTEL_METRICS_EXPORTER=prometheus: one /metrics for the four services
	// (each would bind the same port), bound before anything is created.
	var prom *otelenv.PrometheusServer
	if os.Getenv("OTEL_METRICS_EXPORTER") == otelenv.ExporterPrometheus {
		if sp.on {
			return fmt.Errorf("up --spire: OTEL_METRICS_EXPORTER=prometheus: the four services run in four processes, which would all bind OTEL_EXPORTER_PROMETHEUS_PORT; run `shop up` without --spire for one /metrics: %w", errUsage)
		}
		if prom, err = otelenv.ListenPrometheus(); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err = errors.Join(err, prom.Shutdown(sctx))
		}()
	}
	// The development issuer of cert-bound tokens: its key and the JWKS the
	// gateway verifies with, in --cert-dir, whatever issues the SVIDs.
	if _, err := os.Stat(filepath.Join(cfg.CertDir, tokens.JWKSFile)); errors.Is(err, os.ErrNotExist) {
		res, err := tokens.InitDev(cfg.CertDir, false)
		if err != nil {
			return err
		}
		cfg.Log.Info("created development token issuer key", slog.String("dir", cfg.CertDir), slog.String("kid", res.KeyID))
	}
	if sp.on {
		return upSPIRE(ctx, sp, fs, cfg, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(cfg.CertDir, certs.BundleFile)); errors.Is(err, os.ErrNotExist) {
		res, err := sample.InitCerts(cfg.CertDir, certs.InitOptions{})
		if err != nil {
			return err
		}
		cfg.Log.Info("created development certificates", slog.String("dir", cfg.CertDir), slog.Int("files", len(res.Files)))
	}
	// One tree printer for the four services: a request's spans from all of
	// them print as one tree (unless OTEL_* sends them elsewhere).
	printer := tracetree.NewPrinter(stdout)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = printer.Shutdown(sctx)
	}()
	cfg.Telemetry = func(name string) (*otelenv.Providers, error) {
		return otelenv.Setup(ctx, name, version.Version, otelenv.WithoutGlobal(), otelenv.DefaultToConsoleTree(printer),
			otelenv.WithPrometheusServer(prom))
	}
	m, err := shop.Start(ctx, cfg)
	if err != nil {
		return err
	}
	printWelcome(stdout, m, prom)
	return m.Wait()
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("serve", "Usage: shop serve NAME [flags]\n\nRuns one service (gateway, orders, inventory or payments) with its SVID from\n--cert-dir. Its downstreams are reached at the other services' addresses.\n\nFlags:\n", stderr)
	listen := fs.String("listen", "", "listen address; default: the port of this service's -addr flag on all interfaces (env SHOP_LISTEN)")
	c.register(fs, "address (listen port for this service, target for its clients)")
	checkConfig := fs.Bool("check-config", false, "check the flags, environment, certificates and policy file, print the effective configuration and exit without serving")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(fs, args); err != nil {
			return err
		}
		return fmt.Errorf("serve: missing service NAME (gateway, orders, inventory or payments): %w", errUsage)
	}
	name := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	if _, ok := cfg.Addrs[name]; !ok {
		return fmt.Errorf("serve: unknown service %q (want gateway, orders, inventory or payments): %w", name, errUsage)
	}
	cfg.RateLimited = []string{name} // --rate-limit limits the callers of the service served
	addr := *listen
	if addr == "" {
		_, port, _ := net.SplitHostPort(cfg.Addrs[name])
		addr = ":" + port
	}
	if *checkConfig {
		return checkServeConfig(ctx, stdout, name, addr, cfg)
	}
	printer := tracetree.NewPrinter(os.Stdout)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = printer.Shutdown(sctx)
	}()
	cfg.Telemetry = func(name string) (*otelenv.Providers, error) {
		return otelenv.Setup(ctx, name, version.Version, otelenv.DefaultToConsoleTree(printer))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", name, err)
	}
	return shop.Serve(ctx, name, ln, cfg)
}
