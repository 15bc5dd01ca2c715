package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
)

// harness is what the driver shares between the configurations: the
// binaries it starts, the certificates, the OTLP sink, and every process
// started, so that each is stopped on the way out, error or not.
type harness struct {
	o       options
	exe     string // this binary, re-executed as a server
	dir     string // the run's temporary directory: certificates, logs, the shop binary
	certDir string // the sample's development PKI (sample.InitCerts)
	ca      *certs.CA
	sink    *sink
	shop    string  // the shop binary, when a configuration runs it
	root    string  // the trustmesh module's directory, where shop runs (its default --policy is relative)
	procs   []*proc // every process started, in order
}

// deployment is one configuration's running servers.
type deployment struct {
	cfg       config
	procs     []*proc
	services  []string // the sample service of each process, when there are several
	addr      string   // where the driver calls: the server, or the gateway
	inventory string   // the inventory's address, when PlaceOrder is what the driver calls
}

// usage sums what the deployment's processes have used so far.
func (d *deployment) usage(ctx context.Context) (usage, error) {
	sum := usage{allocs: true}
	for _, p := range d.procs {
		u, err := p.usage(ctx)
		if err != nil {
			return usage{}, err
		}
		sum.cpu += u.cpu
		sum.perProc = append(sum.perProc, u.cpu)
		sum.allocObjs += u.allocObjs
		sum.allocSize += u.allocSize
		sum.allocs = sum.allocs && u.allocs
	}
	return sum, nil
}

// stopAll stops every process started, last first.
func (h *harness) stopAll() error {
	var errs []error
	for i := len(h.procs) - 1; i >= 0; i-- {
		errs = append(errs, h.procs[i].stop())
	}
	h.procs = nil
	return errors.Join(errs...)
}

// buildShop builds cmd/shop of the trustmesh module that `go list`
// finds from the working directory (the repository, or bench/ whose
// go.mod replaces it with ../) into the run's directory.
func (h *harness) buildShop(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/trustmesh/trustmesh").Output()
	if err != nil {
		return fmt.Errorf("meshbench: shop serve: find the trustmesh module (run meshbench inside the repository): go list -m: %w%s", err, stderrOf(err))
	}
	h.root = strings.TrimSpace(string(out))
	h.shop = filepath.Join(h.dir, "shop")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-o", h.shop, "./cmd/shop") // as `make build`
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("meshbench: shop serve: go build -tags grpcnotrace ./cmd/shop in %s: %w: %s", h.root, err, firstLine(out))
	}
	return nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + firstLine(ee.Stderr)
	}
	return ""
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// creds are the credentials of the sample identity name (gateway, alice,
// admin...) from the run's PKI, for the driver's clients.
func (h *harness) creds(name string) (mesh.Credentials, error) {
	svid, err := x509svid.Load(filepath.Join(h.certDir, name+".pem"), filepath.Join(h.certDir, name+"-key.pem"))
	if err != nil {
		return mesh.Credentials{}, fmt.Errorf("meshbench: credentials of %s: %w", name, err)
	}
	return mesh.Credentials{SVID: svid, Bundles: h.ca.Bundle()}, nil
}

// caller returns who the driver calls t's server as, and the SPIFFE ID
// the server must present: the gateway at inventory (the sample's policy
// lets it list the products and check inventory's health), orders at
// payments (it may check payments' health), alice at the gateway.
func (h *harness) caller(t target) (mesh.Credentials, spiffeid.ID, error) {
	client, server := svcGateway, svcInventory
	switch {
	case t.wl == workloadPlaceOrder:
		client, server = "alice", svcGateway
	case t.cfg.mode == modeShop:
		server = t.cfg.shopService()
		if server == svcPayments {
			client = svcOrders
		}
	}
	creds, err := h.creds(client)
	if err != nil {
		return mesh.Credentials{}, spiffeid.ID{}, err
	}
	return creds, spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/" + server), nil
}

// start starts the servers of c, each in its own process: this binary
// for the per-hop configurations and the bare fan-out, `shop serve` for
// STACK/shop and the trustmesh fan-out. The four services of a fan-out
// start downstreams first, each told where the others listen.
func (h *harness) start(ctx context.Context, c config) (*deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d := &deployment{cfg: c}
	if c.stack != stackPlaceOrder {
		svc := ""
		if c.mode == modeShop {
			svc = c.shopService()
		}
		p, err := h.startOne(ctx, c, svc, nil)
		if err != nil {
			return nil, err
		}
		d.procs, d.addr = []*proc{p}, p.addr
		return d, nil
	}
	addrs := map[string]string{}
	for _, svc := range []string{svcInventory, svcPayments, svcOrders, svcGateway} {
		var down []string
		switch svc {
		case svcOrders:
			down = []string{svcInventory, svcPayments}
		case svcGateway:
			down = []string{svcOrders, svcInventory}
		}
		known := map[string]string{}
		for _, s := range down {
			known[s] = addrs[s]
		}
		p, err := h.startOne(ctx, c, svc, known)
		if err != nil {
			return nil, err
		}
		d.procs, d.services = append(d.procs, p), append(d.services, svc)
		addrs[svc] = p.addr
	}
	d.addr, d.inventory = addrs[svcGateway], addrs[svcInventory]
	return d, nil
}

// startOne starts one server of c: svc is the sample service ("" for a
// per-hop server of this binary), down its downstreams' addresses.
func (h *harness) startOne(ctx context.Context, c config, svc string, down map[string]string) (*proc, error) {
	name, file := c.String(), c.stack+"-"+c.mode
	if svc != "" {
		name, file = name+" "+svc, file+"-"+svc
	}
	env := h.env(c)
	if c.runsShop() {
		args := []string{"serve", svc, "--cert-dir", h.certDir, "--listen", "127.0.0.1:0"}
		for _, s := range slices.Sorted(maps.Keys(down)) {
			args = append(args, "--"+s+"-addr", down[s])
		}
		p, err := startShop(ctx, h.shop, h.root, name, args, env, filepath.Join(h.dir, file+".log"))
		if err != nil {
			return nil, err
		}
		h.procs = append(h.procs, p)
		return p, nil
	}
	env = append(env, roleEnv+"=serve", configEnv+"="+c.String(), caEnv+"="+h.certDir)
	if h.o.cpuprofile != "" {
		if abs, err := filepath.Abs(filepath.Join(h.o.cpuprofile, file+".pprof")); err == nil {
			env = append(env, profileEnv+"="+abs)
		}
	}
	logFile := ""
	if svc != "" {
		var pairs []string
		for _, s := range slices.Sorted(maps.Keys(down)) {
			pairs = append(pairs, s+"="+down[s])
		}
		env = append(env, serviceEnv+"="+svc, addrsEnv+"="+strings.Join(pairs, ","))
		logFile = filepath.Join(h.dir, file+".log") // the services log at info, as shop serve does
	}
	p, err := startServer(ctx, h.exe, name, env, logFile)
	if err != nil {
		return nil, err
	}
	h.procs = append(h.procs, p)
	return p, nil
}

// env is the environment of c's server processes: the driver's, without
// what would change a server's set-up behind the harness's back (OTEL_*,
// SHOP_*, SPIFFE_ENDPOINT_SOCKET, MESHBENCH_*, and GODEBUG when -godebug
// is set), plus c's OpenTelemetry environment and -godebug.
func (h *harness) env(c config) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, prefix := range []string{"OTEL_", "SHOP_", "MESHBENCH_", certs.EndpointSocketEnv + "="} {
			if strings.HasPrefix(kv, prefix) {
				return true
			}
		}
		return h.o.godebug != "" && strings.HasPrefix(kv, "GODEBUG=")
	})
	if h.o.godebug != "" {
		env = append(env, "GODEBUG="+h.o.godebug)
	}
	return append(env, c.env(h.sink.url)...)
}
