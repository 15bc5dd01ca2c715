// Command meshbench measures what a server costs per call, each
// configuration in its own process, against the same stack's bare server.
//
// Per hop (STACK/MODE, STACK grpc-go or connect-go): bare grpc-go and bare
// connect-go (mTLS by crypto/tls, nothing else) and trustmesh on each
// stack with telemetry off, unsampled (OTEL_TRACES_SAMPLER=always_off, no
// metric exporter: otelenv reports it off), undeclared (the same with the
// instrumentation installed anyway) and always on (every span exported in
// batches over OTLP/HTTP to a sink in this process), all served by this
// binary with the sample inventory's method bodies; and STACK/shop, the
// real `shop serve NAME` binary (built once from cmd/shop) with its
// defaults (the policy in services/policy.yaml, 1 allowed call in 100
// audited, logs at info, request validation) and always-on tracing to
// the sink: `shop serve inventory` on grpc-go, `shop serve payments` on
// connect-go (`shop serve` has no stack switch: each sample service has
// its stack, and payments has no ListProducts, so connect-go/shop gets the
// health row only, and is an error without -workload health). -workload picks what the driver calls:
// the inventory's ListProducts (list), grpc.health.v1.Health/Check of the
// server (health; the bare servers register grpc-go's health server or
// connect-go's grpchealth), or both, one row each. STACK/shop is checked
// against issue #19's bounds: it keeps at least 0.90 of the bare server's
// throughput on a health check, 0.85 on ListProducts with always-on
// tracing, where "keeps" is the bare server's CPU per call over its own.
//
// End to end (placeorder/MODE): the driver places orders at the gateway
// (PlaceOrder: gateway -> orders -> inventory.Reserve + payments.Charge),
// four services in four processes, and the server CPU per order is the
// sum over the four. placeorder/bare runs the sample's services on bare
// servers of their own stacks (this binary; gateway and payments
// connect-go, orders and inventory grpc-go) with crypto/tls mTLS, bare
// clients, and the sample's method bodies, without authorization,
// transaction tokens, request validation or telemetry (the bare gateway's
// PlaceOrder is the gateway's without its identity checks; the bare orders
// takes its subject from a token minted once at start). placeorder/off and
// placeorder/always-on run the four real `shop serve NAME` processes with
// their defaults, exporters none (otelenv reports the set-up off; shop
// serve has no switch to leave telemetry out) or every span exported to
// the sink. Every order is one apple: each inventory is restocked first.
// After each batch of orders the driver waits -settle before reading the
// servers' CPU, so that the orders' later statuses (shipped, delivered:
// 2 s apart by default) are counted with the orders they belong to.
//
// The driver (this process) starts every server, warms each up, then runs
// alternating rounds: in each, every row in turn gets -calls calls from -c
// concurrent callers over -conns connections (one grpc-go client for all),
// and the servers' CPU time (utime+stime from /proc/PID/stat) and heap
// allocations (runtime/metrics, read by each server of this binary
// itself; n/a for shop serve) are taken before and after. Then each row
// gets -latency-calls calls one at a time, for the latency at concurrency
// 1. It prints each round, a table of medians and the checks. Every
// process it started is stopped on the way out, error or not (shop serve
// also gets SIGTERM if the driver dies); -timeout bounds the run.
//
// Usage (from bench/, or `make bench-mesh` at the root):
//
//	go run ./meshbench [-rounds 3] [-calls 20000] [-c 16] [-conns 4] [-godebug adaptivestackstart=0]
//	go run ./meshbench -configs grpc-go/bare,grpc-go/shop,connect-go/bare,connect-go/shop -workload list,health
//	go run ./meshbench -configs placeorder/bare,placeorder/off,placeorder/always-on
//
// Go's adaptive goroutine stack start size (on by default) sizes new
// goroutines' stacks from the average seen so far, which can make a bare
// server look slower than it is; -godebug adaptivestackstart=0 gives every
// server the same fixed start size, for a like-for-like run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/services/orders"
	shopsample "github.com/trustmesh/trustmesh/services/shop/sample"
)

func main() {
	if os.Getenv(roleEnv) == "serve" {
		if err := serveMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// defaultConfigs are the configurations measured unless -configs says
// otherwise.
var defaultConfigs = []string{
	"grpc-go/bare", "grpc-go/off", "grpc-go/unsampled", "grpc-go/always-on",
	"connect-go/bare", "connect-go/off", "connect-go/unsampled", "connect-go/always-on",
}

const usageText = `Usage: meshbench [flags]

Server CPU per call (and allocations, rps, latency at concurrency 1) of each
configuration, each server in its own process, against the same stack's bare
server; STACK/shop checked against issue #19's bounds (see BENCHMARKS.md).

  meshbench                                   the eight per-hop configurations, ListProducts
  meshbench -configs grpc-go/bare,grpc-go/shop,connect-go/bare,connect-go/shop -workload list,health
  meshbench -configs placeorder/bare,placeorder/off,placeorder/always-on

Flags:
`

// defaultSettle is how long the orders' later statuses take with the
// sample's default step interval, and a margin.
const defaultSettle = 2*orders.DefaultStepInterval + 500*time.Millisecond

type options struct {
	configs      []config
	workloads    []string
	targets      []target
	rounds       int
	calls        int
	warmup       int
	concurrency  int
	conns        int
	latencyCalls int
	godebug      string
	propagate    bool
	settle       time.Duration
	timeout      time.Duration
	cpuprofile   string
}

func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("meshbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	var o options
	configs := fs.String("configs", strings.Join(defaultConfigs, ","), "the configurations, STACK/MODE separated by commas:\n"+
		"grpc-go/MODE or connect-go/MODE, one server: MODE bare, workers (grpc-go only: bare with the stream workers a trustmesh server\n"+
		"keeps, grpc.NumStreamWorkers), off, unsampled, undeclared (unsampled with the instrumentation installed\n"+
		"anyway), always-on, or shop (the real shop serve inventory on grpc-go, shop serve payments on connect-go: health rows only, with\n"+
		"their defaults and always-on tracing; needs the same stack's bare, to check issue #19's bounds against);\n"+
		"placeorder/MODE, PlaceOrder through the four sample services in four processes: MODE bare (bare servers), off or always-on\n"+
		"(four shop serve NAME)")
	workloads := fs.String("workload", workloadList, "what the driver calls on each STACK/MODE server: list (the inventory's ListProducts), health\n"+
		"(grpc.health.v1.Health/Check, service \"\"), or list,health (a row each); placeorder/* always gets PlaceOrder")
	fs.IntVar(&o.rounds, "rounds", 3, "alternating rounds (1 to 20)")
	fs.IntVar(&o.calls, "calls", 20000, "calls per configuration per round (1 to 1000000)")
	fs.IntVar(&o.warmup, "warmup", 2000, "calls per configuration before the first round")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent callers (1 to 1000)")
	fs.IntVar(&o.conns, "conns", 4, "connections per server (1 to 64)")
	fs.IntVar(&o.latencyCalls, "latency-calls", 2000, "calls one at a time per configuration per round, for p50 and p99 at concurrency 1 (0: none)")
	fs.StringVar(&o.godebug, "godebug", "", "GODEBUG for the servers, e.g. adaptivestackstart=0 (default: the driver's environment)")
	fs.BoolVar(&o.propagate, "propagate", true, "on ListProducts, send a sampled traceparent (a new trace per call) and the caller chain in baggage, as a traced\n"+
		"mesh caller does (health checks and PlaceOrder, a probe's and a person's calls, carry neither)")
	fs.DurationVar(&o.settle, "settle", defaultSettle, "placeorder/*: how long to wait after each batch of orders before reading the servers' CPU, so that the orders'\n"+
		"later statuses are counted (0 to 1m)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "a directory: each server of this binary (not shop serve) writes its CPU profile there, as STACK-MODE.pprof,\n"+
		"and its allocations as STACK-MODE.allocs.pprof (placeorder/bare: placeorder-bare-SERVICE.pprof; go tool pprof reads them)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("meshbench: unexpected arguments %q", fs.Args())
	}
	for _, bound := range []struct {
		name     string
		v, lo, h int
	}{
		{"rounds", o.rounds, 1, 20}, {"calls", o.calls, 1, 1_000_000}, {"warmup", o.warmup, 0, 1_000_000},
		{"c", o.concurrency, 1, 1000}, {"conns", o.conns, 1, 64}, {"latency-calls", o.latencyCalls, 0, 100_000},
	} {
		if bound.v < bound.lo || bound.v > bound.h {
			return o, fmt.Errorf("meshbench: -%s %d: want %d to %d", bound.name, bound.v, bound.lo, bound.h)
		}
	}
	if o.settle < 0 || o.settle > time.Minute {
		return o, fmt.Errorf("meshbench: -settle %s: want 0 to 1m", o.settle)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("meshbench: -timeout %s: want more than 0", o.timeout)
	}
	seen := map[config]bool{}
	for s := range strings.SplitSeq(*configs, ",") {
		c, err := parseConfig(strings.TrimSpace(s))
		if err != nil {
			return o, err
		}
		if seen[c] {
			return o, fmt.Errorf("meshbench: configuration %s given twice", c)
		}
		seen[c] = true
		o.configs = append(o.configs, c)
	}
	var err error
	if o.workloads, err = parseWorkloads(*workloads); err != nil {
		return o, err
	}
	if o.targets, err = targets(o.configs, o.workloads); err != nil {
		return o, err
	}
	return o, nil
}

// sample is one row's measurement in one round.
type sample struct {
	calls   int
	elapsed time.Duration
	usage   usage // used by the row's servers during the calls
}

func (s sample) cpuPerCall() time.Duration { return s.usage.cpu / time.Duration(s.calls) }
func (s sample) allocsPerCall() float64    { return float64(s.usage.allocObjs) / float64(s.calls) }
func (s sample) bytesPerCall() float64     { return float64(s.usage.allocSize) / float64(s.calls) }
func (s sample) rps() float64              { return float64(s.calls) / s.elapsed.Seconds() }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	o, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	h := &harness{o: o}
	if h.exe, err = os.Executable(); err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	if h.dir, err = os.MkdirTemp("", "meshbench-"); err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	defer os.RemoveAll(h.dir)
	// The sample's development PKI: the CA (this binary's servers issue
	// their SVIDs from it) and every sample identity's SVID, as `meshctl
	// certs init` writes them for `shop serve`.
	h.certDir = filepath.Join(h.dir, "certs")
	res, err := shopsample.InitCerts(h.certDir, certs.InitOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("shop.example")})
	if err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	h.ca = res.CA
	if h.sink, err = startSink(); err != nil {
		return err
	}
	defer h.sink.close()
	for _, c := range o.configs {
		if c.runsShop() {
			if err := h.buildShop(ctx); err != nil {
				return err
			}
			break
		}
	}

	printHeader(out, o, h.root)
	defer func() { err = errors.Join(err, h.stopAll()) }() // flushes the spans still batched
	deps := map[config]*deployment{}
	clients := make([]*loadClient, len(o.targets))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	}()
	for _, c := range o.configs {
		d, err := h.start(ctx, c)
		if err != nil {
			return err
		}
		deps[c] = d
		if d.inventory != "" {
			admin, err := h.creds("admin")
			if err != nil {
				return err
			}
			orders := int64(o.warmup + o.rounds*(o.calls+o.latencyCalls))
			if err := restock(ctx, d.inventory, admin, orders); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
		}
		for i, t := range o.targets {
			if t.cfg != c {
				continue
			}
			creds, server, err := h.caller(t)
			if err != nil {
				return err
			}
			if clients[i], err = dialLoad(d.addr, creds, server, t.wl, o.conns, o.propagate); err != nil {
				return err
			}
			if o.warmup > 0 {
				if _, err := clients[i].run(ctx, o.warmup, o.concurrency); err != nil {
					return fmt.Errorf("%s %s: warm-up: %w", c, t.wl, err)
				}
				if err := h.settle(ctx, t); err != nil {
					return err
				}
			}
		}
	}

	samples := make([][]sample, len(o.targets))
	lat := make([][]time.Duration, len(o.targets))
	selfStart, err := cpuTime("self")
	if err != nil {
		return err
	}
	var measured int
	for r := range o.rounds {
		// Each round starts one row further on, so that none always runs
		// first (or right after the same neighbour).
		for k := range o.targets {
			i := (k + r) % len(o.targets)
			t := o.targets[i]
			s, err := h.measure(ctx, t, deps[t.cfg], clients[i])
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
			measured += s.calls
			allocs, bytes := "n/a", "n/a"
			if s.usage.allocs {
				allocs, bytes = fmt.Sprintf("%.1f", s.allocsPerCall()), fmt.Sprintf("%.0f", s.bytesPerCall())
			}
			fmt.Fprintf(out, "round %d  %-22s %-10s %8.0f rps  server %6.1f µs CPU/call  %6s allocs/call  %8s B/call\n",
				r+1, t.cfg, t.wl, s.rps(), micros(s.cpuPerCall()), allocs, bytes)
		}
		for k := range o.targets {
			i := (k + r) % len(o.targets)
			if o.latencyCalls == 0 {
				break
			}
			l, err := clients[i].latencies(ctx, o.latencyCalls)
			if err != nil {
				return err
			}
			lat[i] = append(lat[i], l...)
			measured += o.latencyCalls
			if err := h.settle(ctx, o.targets[i]); err != nil {
				return err
			}
		}
	}
	selfEnd, err := cpuTime("self")
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	rows := summarize(o.targets, samples, lat, deps)
	printTable(out, rows)
	printChecks(out, rows)
	if err := h.stopAll(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe load generator (this process, with the OTLP sink: %d spans received) used %.1f µs CPU per call\n"+
		"over the rounds and latency runs. Load average now: %s.\n",
		h.sink.spans.Load(), micros((selfEnd-selfStart)/time.Duration(measured)), loadAvg())
	return nil
}

// measure makes -calls calls of t to d through c and returns what d's
// servers used.
func (h *harness) measure(ctx context.Context, t target, d *deployment, c *loadClient) (sample, error) {
	before, err := d.usage(ctx)
	if err != nil {
		return sample{}, err
	}
	elapsed, err := c.run(ctx, h.o.calls, h.o.concurrency)
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w", t.cfg, t.wl, err)
	}
	if err := h.settle(ctx, t); err != nil {
		return sample{}, err
	}
	after, err := d.usage(ctx)
	if err != nil {
		return sample{}, err
	}
	u := usage{
		cpu: after.cpu - before.cpu, allocObjs: after.allocObjs - before.allocObjs, allocSize: after.allocSize - before.allocSize,
		allocs: before.allocs && after.allocs,
	}
	for i := range after.perProc {
		u.perProc = append(u.perProc, after.perProc[i]-before.perProc[i])
	}
	return sample{calls: h.o.calls, elapsed: elapsed, usage: u}, nil
}

// settle waits -settle after a batch of orders (and returns at once for
// any other workload), so that the orders' later statuses run before the
// next reading of the servers' CPU.
func (h *harness) settle(ctx context.Context, t target) error {
	if t.wl != workloadPlaceOrder || h.o.settle == 0 {
		return nil
	}
	timer := time.NewTimer(h.o.settle)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("meshbench: %s: %w", t.cfg, ctx.Err())
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
