// Command meshbench measures what a server costs per call, each
// configuration in its own process: bare grpc-go and bare connect-go (mTLS
// by crypto/tls, nothing else) and trustmesh on each stack with telemetry
// off, unsampled (OTEL_TRACES_SAMPLER=always_off, no metric exporter:
// otelenv reports it off) and always on (every span exported in batches
// over OTLP/HTTP to a sink in this process). Every server serves the sample
// inventory's ListProducts, the same method body on both stacks.
//
// The driver (this process) starts every server, warms each up, then runs
// alternating rounds: in each, every configuration in turn gets -calls
// calls from -c concurrent callers over -conns connections (one grpc-go
// client for all), and the server's CPU time (utime+stime from
// /proc/PID/stat) and heap allocations (runtime/metrics, read by the server
// itself) are taken before and after. Then each configuration gets
// -latency-calls calls one at a time, for the latency of one hop at
// concurrency 1. It prints each round and a table of medians.
//
// Usage (from bench/, or `make bench-mesh` at the root):
//
//	go run ./meshbench [-rounds 3] [-calls 20000] [-c 16] [-conns 4] [-godebug adaptivestackstart=0]
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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
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

type options struct {
	configs      []config
	rounds       int
	calls        int
	warmup       int
	concurrency  int
	conns        int
	latencyCalls int
	godebug      string
	propagate    bool
	timeout      time.Duration
	cpuprofile   string
}

func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("meshbench", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	configs := fs.String("configs", strings.Join(defaultConfigs, ","), "the configurations, STACK/MODE separated by commas: STACK grpc-go or connect-go, MODE bare, off, unsampled, undeclared (unsampled with the instrumentation installed anyway) or always-on")
	fs.IntVar(&o.rounds, "rounds", 3, "alternating rounds (1 to 20)")
	fs.IntVar(&o.calls, "calls", 20000, "calls per configuration per round (1 to 1000000)")
	fs.IntVar(&o.warmup, "warmup", 2000, "calls per configuration before the first round")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent callers (1 to 1000)")
	fs.IntVar(&o.conns, "conns", 4, "connections per server (1 to 64)")
	fs.IntVar(&o.latencyCalls, "latency-calls", 2000, "calls one at a time per configuration per round, for p50 and p99 at concurrency 1 (0: none)")
	fs.StringVar(&o.godebug, "godebug", "", "GODEBUG for the servers, e.g. adaptivestackstart=0 (default: the driver's environment)")
	fs.BoolVar(&o.propagate, "propagate", true, "send a sampled traceparent (a new trace per call) and the caller chain in baggage, as a traced mesh caller does")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "a directory: each server writes its CPU profile there, as STACK-MODE.pprof, and its allocations as STACK-MODE.allocs.pprof (go tool pprof reads them)")
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
	return o, nil
}

// sample is one configuration's measurement in one round.
type sample struct {
	calls   int
	elapsed time.Duration
	usage   usage // used by the server during the calls
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
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	dir, err := os.MkdirTemp("", "meshbench-")
	if err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	defer os.RemoveAll(dir)
	ca, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	if err := ca.Save(dir); err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	gateway, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(gatewayID)})
	if err != nil {
		return fmt.Errorf("meshbench: %w", err)
	}
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.close()

	printHeader(out, o)
	servers := make([]*server, 0, len(o.configs))
	clients := make([]*loadClient, 0, len(o.configs))
	stopped := false
	stopAll := func() error {
		if stopped {
			return nil
		}
		stopped = true
		var errs []error
		for _, c := range clients {
			c.close()
		}
		for _, s := range servers {
			errs = append(errs, s.stop()) // flushes the spans still batched
		}
		return errors.Join(errs...)
	}
	defer func() { err = errors.Join(err, stopAll()) }()
	for _, c := range o.configs {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := startServer(sctx, exe, c, serverEnv(c, dir, sink.url, o.godebug, o.cpuprofile))
		scancel()
		if err != nil {
			return err
		}
		servers = append(servers, s)
		lc, err := dialLoad(s.addr, mesh.Credentials{SVID: gateway, Bundles: ca.Bundle()}, o.conns, o.propagate)
		if err != nil {
			return err
		}
		clients = append(clients, lc)
		if o.warmup > 0 {
			if _, err := lc.run(ctx, o.warmup, o.concurrency); err != nil {
				return fmt.Errorf("%s: warm-up: %w", c, err)
			}
		}
	}

	samples := make([][]sample, len(o.configs))
	lat := make([][]time.Duration, len(o.configs))
	selfStart, err := cpuTime("self")
	if err != nil {
		return err
	}
	var measured int
	for r := range o.rounds {
		// Each round starts one configuration further on, so that none
		// always runs first (or right after the same neighbour).
		for k := range o.configs {
			i := (k + r) % len(o.configs)
			s, err := measure(ctx, servers[i], clients[i], o.calls, o.concurrency)
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
			measured += s.calls
			fmt.Fprintf(out, "round %d  %-22s %8.0f rps  server %6.1f µs CPU/call  %6.1f allocs/call  %8.0f B/call\n",
				r+1, o.configs[i], s.rps(), micros(s.cpuPerCall()), s.allocsPerCall(), s.bytesPerCall())
		}
		for k := range o.configs {
			i := (k + r) % len(o.configs)
			if o.latencyCalls == 0 {
				break
			}
			l, err := clients[i].latencies(ctx, o.latencyCalls)
			if err != nil {
				return err
			}
			lat[i] = append(lat[i], l...)
		}
	}
	selfEnd, err := cpuTime("self")
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	printTable(out, o, samples, lat)
	if err := stopAll(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe load generator (this process, with the OTLP sink: %d spans received) used %.1f µs CPU per call\n"+
		"over the rounds and latency runs. Load average now: %s.\n",
		sink.spans.Load(), micros((selfEnd-selfStart)/time.Duration(measured+o.rounds*len(o.configs)*o.latencyCalls)), loadAvg())
	return nil
}

// measure makes calls calls to s through c and returns what the server
// used.
func measure(ctx context.Context, s *server, c *loadClient, calls, concurrency int) (sample, error) {
	before, err := s.usage(ctx)
	if err != nil {
		return sample{}, err
	}
	elapsed, err := c.run(ctx, calls, concurrency)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", s.cfg, err)
	}
	after, err := s.usage(ctx)
	if err != nil {
		return sample{}, err
	}
	return sample{calls: calls, elapsed: elapsed, usage: usage{
		cpu: after.cpu - before.cpu, allocObjs: after.allocObjs - before.allocObjs, allocSize: after.allocSize - before.allocSize,
	}}, nil
}

// serverEnv is the environment of c's server: the driver's, without its
// OTEL_* variables (and GODEBUG when godebug is set), plus c's.
func serverEnv(c config, caDir, sink, godebug, profileDir string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "OTEL_") || (godebug != "" && strings.HasPrefix(kv, "GODEBUG="))
	})
	env = append(env, roleEnv+"=serve", configEnv+"="+c.String(), caEnv+"="+caDir)
	if godebug != "" {
		env = append(env, "GODEBUG="+godebug)
	}
	if profileDir != "" {
		abs, err := filepath.Abs(filepath.Join(profileDir, c.stack+"-"+c.mode+".pprof"))
		if err == nil {
			env = append(env, profileEnv+"="+abs)
		}
	}
	return append(env, c.env(sink)...)
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
