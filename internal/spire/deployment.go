package spire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/trustmesh/trustmesh/certs"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultStartTimeout is how long [Start] waits for the server and the
// agent to become healthy, unless Config.StartTimeout says otherwise.
const DefaultStartTimeout = 60 * time.Second

// StateDirEnv is the environment variable through which deploy/spire's
// server.conf and agent.conf (read with -expandEnv) learn where their state
// lives.
const StateDirEnv = "SPIRE_STATE_DIR"

// Config configures a local SPIRE deployment.
type Config struct {
	// BinDir holds the spire-server and spire-agent binaries. By default,
	// .cache/spire/bin (where `make spire` builds them), then $PATH.
	BinDir string
	// ConfigDir holds server.conf and agent.conf. By default, deploy/spire.
	ConfigDir string
	// StateDir is where the server and agent keep their state (datastore,
	// keys, sockets) and their logs (server.log, agent.log). It is
	// required, and its path must be short enough for Unix sockets (about
	// 80 bytes).
	StateDir string
	// Logs, when set, also receives the server's and the agent's output.
	// By default it goes only to the log files in StateDir.
	Logs io.Writer
	// StartTimeout bounds each wait for readiness (server healthy, agent
	// healthy). By default, [DefaultStartTimeout].
	StartTimeout time.Duration
	// Entries are created before the agent starts, with the agent as their
	// parent, so that its first sync already has them.
	Entries []Entry
	// Log receives progress lines. By default they are discarded.
	Log *slog.Logger
}

// Entry is a registration entry: the SPIFFE ID that a workload matching
// every selector gets.
type Entry struct {
	// ID is the SPIFFE ID of the SVID.
	ID spiffeid.ID
	// Selectors must all match the workload, e.g. "unix:uid:1000",
	// "unix:path:/usr/local/bin/shop-gateway".
	Selectors []string
	// DNSNames are added to the SVID as DNS SANs.
	DNSNames []string
	// X509TTL is the lifetime of the X509-SVID; zero takes the server's
	// default_x509_svid_ttl.
	X509TTL time.Duration
}

// Deployment is a running SPIRE server and agent. Its methods are not safe
// for concurrent use.
type Deployment struct {
	cfg        Config
	serverBin  string
	agentBin   string
	serverPort int
	server     *process
	agent      *process
	agentID    spiffeid.ID
}

// Start starts spire-server, writes its bundle for the agent to bootstrap
// with, creates a join token and the entries, then starts spire-agent with
// the token, and returns once both report healthy. On failure it stops
// whatever it started; the error is one line naming what failed and the log
// file to read.
func Start(ctx context.Context, cfg Config) (_ *Deployment, err error) {
	if cfg.StateDir == "" {
		return nil, errors.New("spire: no state directory")
	}
	if cfg.ConfigDir == "" {
		cfg.ConfigDir = filepath.Join("deploy", "spire")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	if cfg.ConfigDir, err = filepath.Abs(cfg.ConfigDir); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	for _, f := range []string{"server.conf", "agent.conf"} {
		if _, err := os.Stat(filepath.Join(cfg.ConfigDir, f)); err != nil {
			return nil, fmt.Errorf("spire: config: %w (run from the repository root or pass the deploy/spire directory)", err)
		}
	}
	d := &Deployment{cfg: cfg}
	if d.serverBin, err = FindBinary(cfg.BinDir, "spire-server"); err != nil {
		return nil, err
	}
	if d.agentBin, err = FindBinary(cfg.BinDir, "spire-agent"); err != nil {
		return nil, err
	}
	if n := len(d.AgentSocket()); n > 100 {
		return nil, fmt.Errorf("spire: state directory %s is too long for a Unix socket path (%d bytes); use a shorter one", cfg.StateDir, n)
	}
	for _, dir := range []string{"server", filepath.Join("agent", "public")} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, dir), 0o700); err != nil {
			return nil, fmt.Errorf("spire: %w", err)
		}
	}
	if d.serverPort, err = freePort(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()

	if err := d.StartServer(ctx); err != nil {
		return nil, err
	}
	bundle, err := d.serverCLI(ctx, "bundle", "show", "-format", "pem")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "agent", "bootstrap.pem"), bundle, 0o600); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	out, err := d.serverCLI(ctx, "token", "generate", "-ttl", "600")
	if err != nil {
		return nil, err
	}
	var token string
	for _, line := range strings.Split(string(out), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "Token: "); ok {
			token = t
		}
	}
	if token == "" {
		return nil, fmt.Errorf("spire: token generate: no token in its output %q", out)
	}
	if d.agentID, err = spiffeid.FromSegments(d.TrustDomain(), "spire", "agent", "join_token", token); err != nil {
		return nil, fmt.Errorf("spire: agent ID: %w", err)
	}
	for _, e := range cfg.Entries {
		if err := d.CreateEntry(ctx, e); err != nil {
			return nil, err
		}
	}
	if err := d.startAgent(ctx, token); err != nil {
		return nil, err
	}
	return d, nil
}

// TrustDomain is the trust domain of deploy/spire's configuration.
func (d *Deployment) TrustDomain() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(certs.DefaultTrustDomain)
}

// AgentSocket is the path of the agent's Workload API socket.
func (d *Deployment) AgentSocket() string {
	return filepath.Join(d.cfg.StateDir, "agent", "public", "api.sock")
}

// AgentAddr is the Workload API address for SPIFFE_ENDPOINT_SOCKET:
// unix:// and the agent's socket path.
func (d *Deployment) AgentAddr() string { return "unix://" + d.AgentSocket() }

// AgentBinary is the path of spire-agent, whose `api fetch x509` gives a
// person an identity.
func (d *Deployment) AgentBinary() string { return d.agentBin }

// ServerSocket is the path of the server API socket (for spire-server
// commands: -socketPath).
func (d *Deployment) ServerSocket() string {
	return filepath.Join(d.cfg.StateDir, "server", "api.sock")
}

// ServerLog and AgentLog are the log files of the server and the agent.
func (d *Deployment) ServerLog() string { return filepath.Join(d.cfg.StateDir, "server.log") }

// AgentLog is the log file of the agent.
func (d *Deployment) AgentLog() string { return filepath.Join(d.cfg.StateDir, "agent.log") }

// StartServer starts spire-server (again, after [Deployment.StopServer]:
// same port, datastore and keys, so the same CA) and waits until it is
// healthy.
func (d *Deployment) StartServer(ctx context.Context) error {
	if d.server != nil && !d.server.exited() {
		return errors.New("spire: server already running")
	}
	out, err := d.logFile(d.ServerLog())
	if err != nil {
		return err
	}
	p, err := startProcess("spire-server", d.serverBin, []string{"run",
		"-config", filepath.Join(d.cfg.ConfigDir, "server.conf"), "-expandEnv",
		"-serverPort", strconv.Itoa(d.serverPort),
	}, []string{StateDirEnv + "=" + d.cfg.StateDir}, out)
	if err != nil {
		return err
	}
	d.server = p
	d.cfg.Log.Info("spire: server starting", slog.Int("pid", p.cmd.Process.Pid), slog.String("port", strconv.Itoa(d.serverPort)), slog.String("log", d.ServerLog()))
	return d.waitHealthy(ctx, p, d.ServerLog(), d.serverBin, "healthcheck", "-socketPath", d.ServerSocket())
}

// StopServer stops spire-server (SIGTERM). The agent keeps serving the
// SVIDs it has and retries the server with backoff.
func (d *Deployment) StopServer() error {
	if d.server == nil {
		return nil
	}
	return d.server.stop()
}

func (d *Deployment) startAgent(ctx context.Context, token string) error {
	out, err := d.logFile(d.AgentLog())
	if err != nil {
		return err
	}
	p, err := startProcess("spire-agent", d.agentBin, []string{"run",
		"-config", filepath.Join(d.cfg.ConfigDir, "agent.conf"), "-expandEnv",
		"-serverPort", strconv.Itoa(d.serverPort), "-joinToken", token,
	}, []string{StateDirEnv + "=" + d.cfg.StateDir}, out)
	if err != nil {
		return err
	}
	d.agent = p
	d.cfg.Log.Info("spire: agent starting", slog.Int("pid", p.cmd.Process.Pid), slog.String("socket", d.AgentSocket()), slog.String("log", d.AgentLog()))
	return d.waitHealthy(ctx, p, d.AgentLog(), d.agentBin, "healthcheck", "-socketPath", d.AgentSocket())
}

// CreateEntry registers e with the agent as its parent.
func (d *Deployment) CreateEntry(ctx context.Context, e Entry) error {
	args := []string{"entry", "create", "-parentID", d.agentID.String(), "-spiffeID", e.ID.String()}
	for _, s := range e.Selectors {
		args = append(args, "-selector", s)
	}
	for _, n := range e.DNSNames {
		args = append(args, "-dns", n)
	}
	if e.X509TTL > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(e.X509TTL/time.Second)))
	}
	if _, err := d.serverCLI(ctx, args...); err != nil {
		return fmt.Errorf("%w (entry %s)", err, e.ID)
	}
	d.cfg.Log.Debug("spire: entry created", slog.String("spiffe_id", e.ID.String()), slog.Any("selectors", e.Selectors))
	return nil
}

// FetchX509 writes an SVID for the calling user, as `spire-agent api fetch
// x509 -write dir` does for a person: svid.0.pem, svid.0.key and
// bundle.0.pem. It retries until the agent has an entry for the caller
// (it may not have synced yet) or timeout passes.
func (d *Deployment) FetchX509(ctx context.Context, dir string, timeout time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	args := FetchArgs(d.AgentSocket(), dir)
	return retry(ctx, timeout, func(ctx context.Context) error {
		return runCLI(ctx, d.agentBin, args...)
	})
}

// FetchArgs are the spire-agent arguments that write the caller's SVID,
// key and bundle into dir.
func FetchArgs(socket, dir string) []string {
	return []string{"api", "fetch", "x509", "-socketPath", socket, "-write", dir}
}

// Close stops the agent, then the server.
func (d *Deployment) Close() error {
	var errs []error
	if d.agent != nil {
		errs = append(errs, d.agent.stop())
	}
	if d.server != nil {
		errs = append(errs, d.server.stop())
	}
	return errors.Join(errs...)
}

// logFile opens path for appending, teed to cfg.Logs if set.
func (d *Deployment) logFile(path string) (io.Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	// The file stays open for the life of this process: children keep
	// appending to it across restarts.
	if d.cfg.Logs != nil {
		return io.MultiWriter(f, d.cfg.Logs), nil
	}
	return f, nil
}

// waitHealthy runs bin's healthcheck until it passes, p exits, or the
// start timeout passes.
func (d *Deployment) waitHealthy(ctx context.Context, p *process, logPath, bin string, args ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := retry(ctx, d.cfg.StartTimeout, func(ctx context.Context) error { return runCLI(ctx, bin, args...) })
	if p.exited() {
		return fmt.Errorf("%w (log: %s)", p.exitError(), logPath)
	}
	if err != nil {
		return fmt.Errorf("spire: %s not healthy: %w (log: %s)", p.name, err, logPath)
	}
	return nil
}

// serverCLI runs a spire-server command against the server API socket and
// returns its output.
func (d *Deployment) serverCLI(ctx context.Context, args ...string) ([]byte, error) {
	args = append(args, "-socketPath", d.ServerSocket())
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.serverBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("spire: spire-server %s %s: %v: %s", args[0], args[1], err, oneLine(stderr.String()+stdout.String()))
	}
	return stdout.Bytes(), nil
}

// runCLI runs bin with args, bounded to 10s, and returns an error with its
// output on failure.
func runCLI(ctx context.Context, bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), args[0], err, oneLine(string(out)))
	}
	return nil
}

// retry calls f with exponential backoff (100ms doubling to 2s) until it
// succeeds, ctx ends or timeout passes; it returns f's last error.
func retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	start := time.Now()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", time.Since(start).Round(time.Second), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// FindBinary returns the path of name in dir, else in $PATH, else an error
// that says how to build it.
func FindBinary(dir, name string) (string, error) {
	if dir == "" {
		dir = filepath.Join(".cache", "spire", "bin")
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return filepath.Abs(p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("spire: %s not found in %s or $PATH: build it with `make spire`", name, dir)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("spire: pick a port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
