package shop

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
)

// The services of the sample mesh.
const (
	Gateway   = "gateway"
	Orders    = "orders"
	Inventory = "inventory"
	Payments  = "payments"
)

// Services lists the services of the sample mesh, edge first.
var Services = []string{Gateway, Orders, Inventory, Payments}

// DefaultAddrs are the loopback addresses `shop up` listens on.
var DefaultAddrs = map[string]string{
	Gateway:   "127.0.0.1:8443",
	Orders:    "127.0.0.1:9001",
	Inventory: "127.0.0.1:9002",
	Payments:  "127.0.0.1:9003",
}

// TrustDomain is the sample mesh's trust domain.
var TrustDomain = spiffeid.RequireTrustDomainFromString("shop.example")

// WorkloadID returns the SPIFFE ID of the sample service name:
// spiffe://shop.example/ns/shop/sa/NAME.
func WorkloadID(name string) spiffeid.ID {
	return spiffeid.RequireFromSegments(TrustDomain, "ns", "shop", "sa", name)
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
	// Log receives every service's logs, each line tagged with the service.
	// The default discards them.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.CertDir == "" {
		c.CertDir = filepath.Join("certs", "dev")
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

// LoadCredentials reads the SVID of service name and the trust bundle from
// dir, failing with a message that names the file and how to create it.
func LoadCredentials(dir, name string) (mesh.Credentials, error) {
	certFile := filepath.Join(dir, name+".pem")
	keyFile := filepath.Join(dir, name+"-key.pem")
	svid, err := x509svid.Load(certFile, keyFile)
	if err != nil {
		return mesh.Credentials{}, fmt.Errorf("shop: %s: load SVID %s: %w (create it with `meshctl certs init --dir %s`)", name, certFile, err, dir)
	}
	bundle, err := certs.LoadBundle(filepath.Join(dir, "bundle.pem"), TrustDomain)
	if err != nil {
		return mesh.Credentials{}, fmt.Errorf("shop: %s: %w", name, err)
	}
	return mesh.Credentials{SVID: svid, Bundles: bundle}, nil
}
