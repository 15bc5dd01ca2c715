package shopmesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trustmesh/trustmesh/internal/spire"
	"github.com/trustmesh/trustmesh/services/shop"
)

// DefaultUser is the person whose entry [Up] creates for grpcurl.
const DefaultUser = "alice"

// UpConfig configures [Up].
type UpConfig struct {
	// SPIRE configures the server and agent; StateDir is required, and
	// ConfigDir defaults to deploy/spire (run from the repository root),
	// whose trust domain must be the sample mesh's. Up adds the entries of
	// the four services and of the user to SPIRE.Entries.
	SPIRE spire.Config
	// Shop is the shop binary the services run from (each through its own
	// hard link in StateDir/bin). By default, this process's executable.
	Shop string
	// ServiceTTL is the X509-SVID lifetime of the services' entries; zero
	// takes the server's default (two minutes in deploy/spire/server.conf).
	ServiceTTL time.Duration
	// User is the person whose entry is created (spiffe://shop.example/user/NAME,
	// selected by this user running spire-agent) and whose identity Up
	// fetches into StateDir/NAME. By default, [DefaultUser].
	User string
	// Mesh configures the services; BinDir, Socket and Probe are set by Up.
	Mesh MeshConfig
}

// Running is the sample mesh on a local SPIRE deployment.
type Running struct {
	// SPIRE is the server and agent.
	SPIRE *spire.Deployment
	// Mesh is the four services.
	Mesh *Mesh
	// User is the person's name and UserDir where their fetched SVID
	// (svid.0.pem, svid.0.key, bundle.0.pem) is.
	User, UserDir string
	// BinDir holds the per-service binaries (shop-gateway, ...).
	BinDir string
}

// Up starts SPIRE with the sample mesh's entries, fetches the user's
// identity through the agent (which proves the agent has synced the
// entries), then starts the four services on the agent's Workload API and
// waits until each presents its SVID. Every wait is bounded; a failure is
// one line naming what failed and what to do, and stops what was started.
func Up(ctx context.Context, cfg UpConfig) (_ *Running, err error) {
	if cfg.SPIRE.StateDir == "" {
		return nil, errors.New("shopmesh: no state directory")
	}
	stateDir, err := filepath.Abs(cfg.SPIRE.StateDir)
	if err != nil {
		return nil, fmt.Errorf("shopmesh: %w", err)
	}
	cfg.SPIRE.StateDir = stateDir
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Shop == "" {
		if cfg.Shop, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("shopmesh: shop binary: %w", err)
		}
	}
	if cfg.SPIRE.Log == nil {
		cfg.SPIRE.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mesh.Log == nil {
		cfg.Mesh.Log = cfg.SPIRE.Log
	}
	agentBin, err := spire.FindBinary(cfg.SPIRE.BinDir, "spire-agent")
	if err != nil {
		return nil, err
	}
	if err := checkConfig(&cfg.SPIRE); err != nil {
		return nil, err
	}
	binDir := filepath.Join(stateDir, "bin")
	if err := LinkServiceBinaries(cfg.Shop, binDir); err != nil {
		return nil, err
	}
	cfg.SPIRE.Entries = append(append(cfg.SPIRE.Entries, ServiceEntries(binDir, cfg.ServiceTTL)...), UserEntry(cfg.User, agentBin))

	r := &Running{User: cfg.User, UserDir: filepath.Join(stateDir, cfg.User), BinDir: binDir}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	if r.SPIRE, err = spire.Start(ctx, cfg.SPIRE); err != nil {
		return nil, err
	}
	timeout := cmpOr(cfg.SPIRE.StartTimeout, spire.DefaultStartTimeout)
	if err := r.SPIRE.FetchX509(ctx, r.UserDir, timeout); err != nil {
		return nil, fmt.Errorf("shopmesh: fetch %s's SVID from the agent at %s: %w (agent log: %s)", cfg.User, r.SPIRE.AgentSocket(), err, r.SPIRE.AgentLog())
	}
	probe, err := spire.LoadFetched(r.UserDir)
	if err != nil {
		return nil, err
	}
	cfg.SPIRE.Log.Info("spire: user identity fetched", slog.String("user", cfg.User), slog.String("dir", r.UserDir))
	cfg.Mesh.BinDir, cfg.Mesh.Socket, cfg.Mesh.Probe = binDir, r.SPIRE.AgentAddr(), probe
	if r.Mesh, err = StartMesh(ctx, cfg.Mesh); err != nil {
		return nil, err
	}
	return r, nil
}

// checkConfig defaults cfg.ConfigDir to deploy/spire and checks that the
// configuration there is for the sample mesh's trust domain.
func checkConfig(cfg *spire.Config) error {
	if cfg.ConfigDir == "" {
		cfg.ConfigDir = filepath.Join("deploy", "spire")
	}
	if _, err := os.Stat(cfg.ConfigDir); err != nil {
		return fmt.Errorf("shopmesh: SPIRE configuration: %w (run from the repository root or pass the deploy/spire directory)", err)
	}
	td, err := spire.ConfigTrustDomain(cfg.ConfigDir)
	if err != nil {
		return err
	}
	if td != shop.TrustDomain {
		return fmt.Errorf("shopmesh: the SPIRE configuration in %s is for trust domain %q, not the sample mesh's %q", cfg.ConfigDir, td.Name(), shop.TrustDomain.Name())
	}
	return nil
}

// Close stops the services, then the agent and the server.
func (r *Running) Close() error {
	var errs []error
	if r.Mesh != nil {
		errs = append(errs, r.Mesh.Stop())
	}
	if r.SPIRE != nil {
		errs = append(errs, r.SPIRE.Close())
	}
	return errors.Join(errs...)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
