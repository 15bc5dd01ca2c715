package shop

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop/sample"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// The services of the sample mesh.
const (
	Gateway   = sample.Gateway
	Orders    = sample.Orders
	Inventory = sample.Inventory
	Payments  = sample.Payments
)

// Services lists the services of the sample mesh, edge first: the workloads
// the development PKI issues SVIDs for ([sample.Workloads]).
var Services = sample.Workloads()

// DefaultAddrs are the loopback addresses `shop up` listens on.
var DefaultAddrs = map[string]string{
	Gateway:   "127.0.0.1:8443",
	Orders:    "127.0.0.1:9001",
	Inventory: "127.0.0.1:9002",
	Payments:  "127.0.0.1:9003",
}

// TrustDomain is the sample mesh's trust domain ([sample.TrustDomain]).
var TrustDomain = spiffeid.RequireTrustDomainFromString(sample.TrustDomain)

// WorkloadID returns the SPIFFE ID of the sample service name:
// spiffe://shop.example/ns/shop/sa/NAME (see [sample.WorkloadID]). It
// panics if name is not a valid path segment.
func WorkloadID(name string) spiffeid.ID {
	id, err := sample.WorkloadID(TrustDomain, name)
	if err != nil {
		panic(fmt.Sprintf("shop: workload %q: %v", name, err))
	}
	return id
}

// Config configures the sample services.
type Config struct {
	// CertDir holds bundle.pem and each service's NAME.pem and NAME-key.pem,
	// as written by `meshctl certs init`. The default is certs/dev.
	CertDir string
	// Addrs maps each service name to the address it is reached at (and, in
	// Start, listens on). Missing entries take [DefaultAddrs].
	Addrs map[string]string
	// PaymentLimit is the largest charge payments accepts, in minor units;
	// zero takes the payments service's default.
	PaymentLimit int64
	// StepInterval is how long a confirmed order waits before each later
	// status (shipped, delivered); zero takes the orders service's default.
	StepInterval time.Duration
	// FederationDir, when set, holds the trust bundles of federated trust
	// domains as TRUST_DOMAIN.pem files, watched for changes; their members
	// may connect and are authorized by policy like anyone else. By default
	// only members of shop.example may connect.
	FederationDir string
	// Stock, when positive, replaces the initial stock of every product of
	// the inventory's default catalogue (load tests place many orders).
	Stock int64
	// RateLimit, when positive, limits each caller (by SPIFFE ID) to this
	// many calls per second at each service of RateLimited, in bursts of
	// up to RateBurst (default: twice RateLimit, at least 1); callers over
	// it get ResourceExhausted, on every path the service answers. Zero: no
	// limit.
	RateLimit float64
	RateBurst int
	// RateLimited names the services RateLimit applies to; by default the
	// gateway only (the edge: the other services' one caller is a
	// workload that serves every user).
	RateLimited []string
	// PolicyFile is the YAML policy merged with the rules declared in the
	// protos, hot-reloaded on change. The default is services/policy.yaml.
	PolicyFile string
	// AllowUncovered turns the start-up (and reload) check that every served
	// method has an allow rule into a warning. By default it stops the
	// service.
	AllowUncovered bool
	// AuditAllows audits one allowed call in every AuditAllows (1: all);
	// zero audits only denials.
	AuditAllows uint64
	// Telemetry, when set, returns the OpenTelemetry providers of service
	// name (see otelenv.Setup); Serve shuts them down, flushing every
	// span, when the service stops. Nil: no telemetry.
	Telemetry func(name string) (*otelenv.Providers, error)
	// Log receives every service's logs, each line tagged with the service.
	// The default discards them.
	Log *slog.Logger
	// SPIFFESocket is the address of a SPIFFE Workload API (a SPIRE agent),
	// e.g. unix:///run/spire/sockets/agent.sock: when set, the services take
	// their SVIDs and trust bundles from it, following its rotations,
	// instead of from CertDir. The default is the SPIFFE_ENDPOINT_SOCKET
	// environment variable; when that is empty too, CertDir is used.
	SPIFFESocket string
	// TokenJWKSFile is the JSON Web Key Set of the issuer whose access
	// tokens the services accept where a policy rule requires one
	// (require_token): tokens for the service's own SPIFFE ID, bound to the
	// caller's certificate. The default is token-jwks.json in CertDir,
	// written by `meshctl tokens init` (and by `shop up`). Without the file,
	// calls that need a token are refused.
	TokenJWKSFile string
	// TokenIssuer is the issuer (iss) those tokens must name. The default is
	// tokens.DevIssuer, the issuer of `meshctl tokens issue`.
	TokenIssuer string
}

func (c Config) withDefaults() Config {
	if c.CertDir == "" {
		c.CertDir = filepath.Join("certs", "dev")
	}
	if c.PolicyFile == "" {
		c.PolicyFile = filepath.Join("services", "policy.yaml")
	}
	addrs := make(map[string]string, len(Services))
	for _, s := range Services {
		addrs[s] = DefaultAddrs[s]
		if a := c.Addrs[s]; a != "" {
			addrs[s] = a
		}
	}
	c.Addrs = addrs
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func checkName(name string) error {
	if !slices.Contains(Services, name) {
		return fmt.Errorf("shop: unknown service %q (want one of %v)", name, Services)
	}
	return nil
}

// OpenCredentials returns the live credentials of service name and a func
// that releases them, to be called when the service stops. With a Workload
// API (cfg.SPIFFESocket, else SPIFFE_ENDPOINT_SOCKET) they come from there
// (a [certs.WorkloadSource] that must offer the SVID of [WorkloadID](name));
// otherwise from a [certs.FileSource] over NAME.pem, NAME-key.pem and
// bundle.pem in cfg.CertDir, which follows `meshctl certs rotate` without a
// restart. Either way, a missing, expired or not yet valid SVID fails the
// start with a one-line message saying what to do.
func OpenCredentials(ctx context.Context, cfg Config, name string) (mesh.Credentials, func() error, error) {
	return openCredentials(ctx, cfg, name, otel.GetMeterProvider())
}

// openCredentials is OpenCredentials reporting the SVID expiry gauge to meters.
func openCredentials(ctx context.Context, cfg Config, name string, meters metric.MeterProvider) (mesh.Credentials, func() error, error) {
	cfg = cfg.withDefaults()
	log := cfg.Log.With(slog.String("service", name))
	if socket := cmp.Or(cfg.SPIFFESocket, os.Getenv(certs.EndpointSocketEnv)); socket != "" {
		src, err := certs.NewWorkloadSource(ctx, socket, log, certs.WithSVIDID(WorkloadID(name)), certs.WithMeterProvider(meters))
		if err != nil {
			return mesh.Credentials{}, nil, fmt.Errorf("shop: %s: %w", name, err)
		}
		return mesh.Credentials{SVID: src, Bundles: src}, src.Close, nil
	}
	certFile := filepath.Join(cfg.CertDir, name+".pem")
	src, err := certs.NewFileSource(ctx, certs.FileSourceConfig{
		CertFile:      certFile,
		KeyFile:       filepath.Join(cfg.CertDir, name+"-key.pem"),
		BundleFile:    filepath.Join(cfg.CertDir, certs.BundleFile),
		BundleDir:     cfg.FederationDir,
		TrustDomain:   TrustDomain,
		Logger:        log,
		MeterProvider: meters,
	})
	if err != nil {
		return mesh.Credentials{}, nil, fmt.Errorf("shop: %s: %w (%s)", name, err, credentialsHint(cfg, name, certFile, err))
	}
	return mesh.Credentials{SVID: src, Bundles: src}, src.Close, nil
}

// credentialsHint says what to do about a file source that did not start:
// create missing certificates, renew an expired or not yet valid SVID, or
// look at the federation directory or the files themselves.
func credentialsHint(cfg Config, name, certFile string, err error) string {
	switch {
	case cfg.FederationDir != "" && strings.Contains(err.Error(), cfg.FederationDir):
		return "check --federation-dir / SHOP_FEDERATION_DIR: a directory of TRUST_DOMAIN.pem bundles"
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("create them with `meshctl certs init --dir %s`", cfg.CertDir)
	case strings.Contains(err.Error(), "SVID expired") || strings.Contains(err.Error(), "not valid until"):
		return fmt.Sprintf("renew it with `meshctl certs rotate --dir %s %s`", cfg.CertDir, name)
	default:
		return fmt.Sprintf("check %s and %s, or recreate them with `meshctl certs init --force --dir %s`",
			certFile, filepath.Join(cfg.CertDir, certs.BundleFile), cfg.CertDir)
	}
}

// LoadCredentials reads the SVID of service or user name and the trust
// bundle from dir once, failing with a message that names the file and how
// to create it. The result does not follow rotations: it suits short-lived
// clients and tests; services use [OpenCredentials].
func LoadCredentials(dir, name string) (mesh.Credentials, error) {
	certFile := filepath.Join(dir, name+".pem")
	keyFile := filepath.Join(dir, name+"-key.pem")
	svid, err := x509svid.Load(certFile, keyFile)
	if err != nil {
		return mesh.Credentials{}, fmt.Errorf("shop: %s: load SVID %s: %w (create it with `meshctl certs init --dir %s`)", name, certFile, err, dir)
	}
	bundle, err := certs.LoadBundle(filepath.Join(dir, certs.BundleFile), TrustDomain)
	if err != nil {
		return mesh.Credentials{}, fmt.Errorf("shop: %s: %w", name, err)
	}
	return mesh.Credentials{SVID: svid, Bundles: bundle}, nil
}
