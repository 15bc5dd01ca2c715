package shopmesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/spire"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

// UserTTL is the X509-SVID lifetime of a person's entry: long enough that
// a fetched identity serves a grpcurl session.
const UserTTL = time.Hour

// ServiceBinary is the path of service name's binary in binDir: every
// service runs from its own executable, and the agent tells them apart by
// it (unix:path).
func ServiceBinary(binDir, name string) string {
	return filepath.Join(binDir, "shop-"+name)
}

// LinkServiceBinaries makes binDir/shop-NAME for every service of the
// sample mesh, hard links to the shop binary (copies across file systems).
func LinkServiceBinaries(shopBin, binDir string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("shopmesh: %w", err)
	}
	for _, name := range shop.Services {
		if err := link(shopBin, ServiceBinary(binDir, name)); err != nil {
			return err
		}
	}
	return nil
}

func link(src, dst string) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("shopmesh: %w", err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("shopmesh: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("shopmesh: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("shopmesh: %w", err)
	}
	return nil
}

// ServiceEntries are the registration entries of the sample mesh's four
// services: spiffe://shop.example/ns/shop/sa/NAME for the process running
// binDir/shop-NAME as this user, with the DNS SANs NAME and localhost (so
// that grpcurl's host name check passes against localhost). ttl zero takes
// the server's default (two minutes in deploy/spire/server.conf).
func ServiceEntries(binDir string, ttl time.Duration) []spire.Entry {
	entries := make([]spire.Entry, 0, len(shop.Services))
	for _, name := range shop.Services {
		entries = append(entries, spire.Entry{
			ID:        shop.WorkloadID(name),
			Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid()), "unix:path:" + ServiceBinary(binDir, name)},
			DNSNames:  []string{name, "localhost"},
			X509TTL:   ttl,
		})
	}
	return entries
}

// UserEntry is the entry of person name (spiffe://shop.example/user/NAME):
// the current user running spire-agent (`spire-agent api fetch x509`), for
// [UserTTL].
func UserEntry(name, agentBin string) spire.Entry {
	return spire.Entry{
		ID:        spiffeid.RequireFromSegments(shop.TrustDomain, "user", name),
		Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid()), "unix:path:" + agentBin},
		X509TTL:   UserTTL,
	}
}

// MeshConfig configures [StartMesh].
type MeshConfig struct {
	// BinDir holds the per-service binaries (see [LinkServiceBinaries]).
	// Required.
	BinDir string
	// Socket is the Workload API address every service gets as
	// SPIFFE_ENDPOINT_SOCKET. Required.
	Socket string
	// Addrs maps each service to its address; missing ones take
	// shop.DefaultAddrs.
	Addrs map[string]string
	// Args are more `shop serve` flags for every service (policy, log
	// level, ...).
	Args []string
	// Env is more environment for every service.
	Env []string
	// Output receives the services' output (their logs carry
	// service=NAME). By default, os.Stderr.
	Output io.Writer
	// Probe, when set, is a caller identity (e.g. a person's fetched SVID)
	// used to check readiness: a service is up once it presents its own
	// SVID in a TLS handshake. Without it, once its port accepts.
	Probe *mesh.Credentials
	// StartTimeout bounds the wait for every service to be up. By default,
	// [spire.DefaultStartTimeout].
	StartTimeout time.Duration
	// Log receives progress lines. By default they are discarded.
	Log *slog.Logger
}

// Mesh is the sample mesh running as one process per service.
type Mesh struct {
	// Addrs maps each service to its address.
	Addrs map[string]string

	procs map[string]*spire.Process
	exit  chan error // the first unexpected exit
	stop  sync.Once
}

// StartMesh runs `shop-NAME serve NAME` for every service with
// SPIFFE_ENDPOINT_SOCKET set to cfg.Socket and waits until each is up. A
// service that exits during the start fails it with its last line of
// output (e.g. no registration entry for it).
func StartMesh(ctx context.Context, cfg MeshConfig) (_ *Mesh, err error) {
	if cfg.BinDir == "" || cfg.Socket == "" {
		return nil, errors.New("shopmesh: mesh needs a binary directory and a Workload API socket")
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = spire.DefaultStartTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{Addrs: map[string]string{}, procs: map[string]*spire.Process{}, exit: make(chan error, 1)}
	var addrArgs []string
	for _, name := range shop.Services {
		m.Addrs[name] = shop.DefaultAddrs[name]
		if a := cfg.Addrs[name]; a != "" {
			m.Addrs[name] = a
		}
		addrArgs = append(addrArgs, "--"+name+"-addr", m.Addrs[name])
	}
	defer func() {
		if err != nil {
			_ = m.Stop()
		}
	}()
	env := append([]string{certs.EndpointSocketEnv + "=" + cfg.Socket}, cfg.Env...)
	for _, name := range shop.Services {
		args := append([]string{"serve", name, "--listen", m.Addrs[name]}, addrArgs...)
		p, err := spire.StartProcess(name, ServiceBinary(cfg.BinDir, name), append(args, cfg.Args...), env, cfg.Output)
		if err != nil {
			return nil, err
		}
		m.procs[name] = p
		cfg.Log.Info("spire: service starting", slog.String("service", name), slog.Int("pid", p.Pid()), slog.String("binary", ServiceBinary(cfg.BinDir, name)))
	}
	for _, name := range shop.Services {
		if err := m.waitUp(ctx, cfg, name); err != nil {
			return nil, err
		}
	}
	for _, name := range shop.Services {
		go func(p *spire.Process) {
			<-p.Done()
			select {
			case m.exit <- p.ExitError():
			default:
			}
		}(m.procs[name])
	}
	return m, nil
}

// waitUp waits until service name presents its SVID (or accepts, without a
// probe identity), it exits, or the start timeout passes.
func (m *Mesh) waitUp(ctx context.Context, cfg MeshConfig, name string) error {
	p := m.procs[name]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := spire.Retry(ctx, cfg.StartTimeout, func(ctx context.Context) error {
		return probe(ctx, m.Addrs[name], shop.WorkloadID(name), cfg.Probe)
	})
	if p.Exited() {
		return p.ExitError()
	}
	if err != nil {
		return fmt.Errorf("shopmesh: %s at %s is not up: %w", name, m.Addrs[name], err)
	}
	return nil
}

// probe dials addr and, with creds, completes a TLS handshake in which the
// server must present an SVID with ID want.
func probe(ctx context.Context, addr string, want spiffeid.ID, creds *mesh.Credentials) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	if creds == nil {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	// The mesh's own client configuration: the server's SVID is checked by
	// the same strict rules as any mesh client checks it.
	cfg, err := mesh.ClientTLSConfig(*creds, tlsconfig.AuthorizeID(want))
	if err != nil {
		return err
	}
	td := tls.Dialer{NetDialer: &d, Config: cfg}
	conn, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Done returns a channel that receives an error when a service exits before
// [Mesh.Stop].
func (m *Mesh) Done() <-chan error { return m.exit }

// Stop stops every service (SIGTERM, then a kill after a grace period).
func (m *Mesh) Stop() error {
	var errs []error
	m.stop.Do(func() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, p := range m.procs {
			wg.Go(func() {
				if err := p.Stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	})
	return errors.Join(errs...)
}
