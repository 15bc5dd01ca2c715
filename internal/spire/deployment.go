package spire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/mesh"
)

// DefaultStartTimeout is how long [Start] waits for the server and the
// agent to become healthy, unless Config.StartTimeout says otherwise.
const DefaultStartTimeout = 60 * time.Second

// StateDirEnv is the environment variable through which server.conf and
// agent.conf (read with -expandEnv) learn where their state lives, e.g.
// data_dir = "${SPIRE_STATE_DIR}/server".
const StateDirEnv = "SPIRE_STATE_DIR"

// Config configures a local SPIRE deployment.
type Config struct {
	// BinDir holds the spire-server and spire-agent binaries. By default,
	// .cache/spire/bin (where `make spire` builds them), then $PATH.
	BinDir string
	// ConfigDir holds server.conf and agent.conf, which keep their state
	// under ${SPIRE_STATE_DIR} (see [StateDirEnv]) and name the same
	// trust_domain. It is required.
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
	// parent, so that its first sync already has them. By default, none.
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
	// "unix:path:/usr/local/bin/api".
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
	td         spiffeid.TrustDomain
	serverBin  string
	agentBin   string
	serverPort int
	server     *Process
	agent      *Process
	agentID    spiffeid.ID
}

// Start starts spire-server, writes its bundle for the agent to bootstrap
// with, creates a join token and the entries, then starts spire-agent with
// the token, and returns once both report healthy. On failure it stops
// whatever it started; the error is one line naming what failed and the log
// file to read.
func Start(ctx context.Context, cfg Config) (_ *Deployment, err error) {
	d, err := newDeployment(cfg)
	if err != nil {
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
	token, err := d.bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range d.cfg.Entries {
		if err := d.CreateEntry(ctx, e); err != nil {
			return nil, err
		}
	}
	if err := d.startAgent(ctx, token); err != nil {
		return nil, err
	}
	return d, nil
}

// newDeployment checks cfg, applies its defaults, finds the binaries, the
// trust domain and a port for the server, and makes the state directories.
func newDeployment(cfg Config) (*Deployment, error) {
	var err error
	switch {
	case cfg.StateDir == "":
		return nil, errors.New("spire: no state directory")
	case cfg.ConfigDir == "":
		return nil, errors.New("spire: no configuration directory (server.conf and agent.conf)")
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
	d := &Deployment{cfg: cfg}
	if d.td, err = ConfigTrustDomain(cfg.ConfigDir); err != nil {
		return nil, err
	}
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
	return d, nil
}

// trustDomainLine is a trust_domain setting in a SPIRE configuration file.
var trustDomainLine = regexp.MustCompile(`(?m)^\s*trust_domain\s*=\s*"([^"]*)"`)

// ConfigTrustDomain reads the trust_domain of server.conf and agent.conf
// in dir, which must agree: the trust domain of a deployment [Start]ed
// with that configuration.
func ConfigTrustDomain(dir string) (spiffeid.TrustDomain, error) {
	var tds []spiffeid.TrustDomain
	for _, name := range []string{"server.conf", "agent.conf"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("spire: config: %w (want a directory with server.conf and agent.conf)", err)
		}
		m := trustDomainLine.FindSubmatch(data)
		if m == nil {
			return spiffeid.TrustDomain{}, fmt.Errorf(`spire: config %s: no trust_domain = "NAME" line`, path)
		}
		td, err := spiffeid.TrustDomainFromString(string(m[1]))
		if err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("spire: config %s: trust_domain %q: %w", path, m[1], err)
		}
		tds = append(tds, td)
	}
	if tds[0] != tds[1] {
		return spiffeid.TrustDomain{}, fmt.Errorf("spire: config %s: server.conf has trust_domain %q but agent.conf %q", dir, tds[0].Name(), tds[1].Name())
	}
	return tds[0], nil
}

// bootstrap writes the server's bundle for the agent to trust it with and
// returns a join token for the agent; it also sets the agent's ID.
func (d *Deployment) bootstrap(ctx context.Context) (token string, err error) {
	bundle, err := d.serverCLI(ctx, "bundle", "show", "-format", "pem")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d.cfg.StateDir, "agent", "bootstrap.pem"), bundle, 0o600); err != nil {
		return "", fmt.Errorf("spire: %w", err)
	}
	out, err := d.serverCLI(ctx, "token", "generate", "-ttl", "600")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "Token: "); ok {
			token = t
		}
	}
	if token == "" {
		return "", fmt.Errorf("spire: token generate: no token in its output %q", out)
	}
	if d.agentID, err = spiffeid.FromSegments(d.td, "spire", "agent", "join_token", token); err != nil {
		return "", fmt.Errorf("spire: agent ID: %w", err)
	}
	return token, nil
}

// TrustDomain is the trust domain of the deployment: the trust_domain of
// its server.conf.
func (d *Deployment) TrustDomain() spiffeid.TrustDomain { return d.td }

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
	if d.server != nil && !d.server.Exited() {
		return errors.New("spire: server already running")
	}
	out, err := d.logFile(d.ServerLog())
	if err != nil {
		return err
	}
	p, err := StartProcess("spire-server", d.serverBin, []string{"run",
		"-config", filepath.Join(d.cfg.ConfigDir, "server.conf"), "-expandEnv",
		"-serverPort", strconv.Itoa(d.serverPort),
	}, []string{StateDirEnv + "=" + d.cfg.StateDir}, out)
	if err != nil {
		return err
	}
	d.server = p
	d.cfg.Log.Info("spire: server starting", slog.Int("pid", p.Pid()), slog.String("port", strconv.Itoa(d.serverPort)), slog.String("log", d.ServerLog()))
	return d.waitHealthy(ctx, p, d.ServerLog(), d.serverBin, "healthcheck", "-socketPath", d.ServerSocket())
}

// StopServer stops spire-server (SIGTERM). The agent keeps serving the
// SVIDs it has and retries the server with backoff.
func (d *Deployment) StopServer() error {
	if d.server == nil {
		return nil
	}
	return d.server.Stop()
}

func (d *Deployment) startAgent(ctx context.Context, token string) error {
	out, err := d.logFile(d.AgentLog())
	if err != nil {
		return err
	}
	p, err := StartProcess("spire-agent", d.agentBin, []string{"run",
		"-config", filepath.Join(d.cfg.ConfigDir, "agent.conf"), "-expandEnv",
		"-serverPort", strconv.Itoa(d.serverPort), "-joinToken", token,
	}, []string{StateDirEnv + "=" + d.cfg.StateDir}, out)
	if err != nil {
		return err
	}
	d.agent = p
	d.cfg.Log.Info("spire: agent starting", slog.Int("pid", p.Pid()), slog.String("socket", d.AgentSocket()), slog.String("log", d.AgentLog()))
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

// BundleJSON returns the server's bundle of its trust domain in the SPIFFE
// bundle format (a JWK Set with x509-svid and jwt-svid keys), as
// `spire-server bundle show -format spiffe` prints it.
func (d *Deployment) BundleJSON(ctx context.Context) ([]byte, error) {
	return d.serverCLI(ctx, "bundle", "show", "-format", "spiffe")
}

// DeleteEntries deletes every registration entry for id (the agent then
// withdraws the identity from its workloads: their Workload API streams end
// with PermissionDenied) and returns how many there were.
func (d *Deployment) DeleteEntries(ctx context.Context, id spiffeid.ID) (int, error) {
	out, err := d.serverCLI(ctx, "entry", "show", "-spiffeID", id.String(), "-output", "json")
	if err != nil {
		return 0, err
	}
	var shown struct {
		Entries []struct {
			ID string `json:"id"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(out, &shown); err != nil {
		return 0, fmt.Errorf("spire: entry show -spiffeID %s: %w", id, err)
	}
	for _, e := range shown.Entries {
		if _, err := d.serverCLI(ctx, "entry", "delete", "-entryID", e.ID); err != nil {
			return 0, fmt.Errorf("%w (entry %s of %s)", err, e.ID, id)
		}
	}
	d.cfg.Log.Debug("spire: entries deleted", slog.String("spiffe_id", id.String()), slog.Int("entries", len(shown.Entries)))
	return len(shown.Entries), nil
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
	return Retry(ctx, timeout, func(ctx context.Context) error {
		return runCLI(ctx, d.agentBin, args...)
	})
}

// FetchArgs are the spire-agent arguments that write the caller's SVID,
// key and bundle into dir.
func FetchArgs(socket, dir string) []string {
	return []string{"api", "fetch", "x509", "-socketPath", socket, "-write", dir}
}

// LoadFetched reads what `spire-agent api fetch x509 -write dir` wrote.
func LoadFetched(dir string) (*mesh.Credentials, error) {
	svid, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		return nil, fmt.Errorf("spire: fetched SVID in %s: %w", dir, err)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(dir, "bundle.0.pem"))
	if err != nil {
		return nil, fmt.Errorf("spire: fetched bundle in %s: %w", dir, err)
	}
	return &mesh.Credentials{SVID: svid, Bundles: bundle}, nil
}

// Close stops the agent, then the server.
func (d *Deployment) Close() error {
	var errs []error
	if d.agent != nil {
		errs = append(errs, d.agent.Stop())
	}
	if d.server != nil {
		errs = append(errs, d.server.Stop())
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
func (d *Deployment) waitHealthy(ctx context.Context, p *Process, logPath, bin string, args ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := Retry(ctx, d.cfg.StartTimeout, func(ctx context.Context) error { return runCLI(ctx, bin, args...) })
	if p.Exited() {
		return fmt.Errorf("%w (log: %s)", p.ExitError(), logPath)
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
