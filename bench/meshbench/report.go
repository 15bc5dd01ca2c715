package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func printHeader(out io.Writer, o options, shopRoot string) {
	godebug := o.godebug
	if godebug == "" {
		godebug = os.Getenv("GODEBUG")
		if godebug == "" {
			godebug = "unset (adaptive stack start on; -godebug adaptivestackstart=0 for a like-for-like run)"
		}
	}
	fmt.Fprintf(out, "meshbench: %s %s/%s, %d CPUs, load average %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAvg())
	fmt.Fprintf(out, "%d rounds of %d calls per configuration, %d callers over %d connections, %d calls at concurrency 1 per round; ListProducts callers send traceparent and baggage: %v\n",
		o.rounds, o.calls, o.concurrency, o.conns, o.latencyCalls, o.propagate)
	if shopRoot != "" {
		fmt.Fprintf(out, "shop serve: built from %s (go build -tags grpcnotrace ./cmd/shop), run there with its defaults\n", shopRoot)
	}
	if slices.Contains(o.configs, config{stackConnect, modeShop}) && slices.Contains(o.workloads, workloadList) {
		fmt.Fprintln(out, "connect-go/shop: health only (shop serve payments has no ListProducts)")
	}
	for _, c := range o.configs {
		if c.stack == stackPlaceOrder {
			fmt.Fprintf(out, "placeorder: one %s per order, server CPU summed over the four services, read %s after each batch\n", placeOrderProduct, o.settle)
			break
		}
	}
	fmt.Fprintf(out, "servers' GODEBUG: %s\n\n", godebug)
}

// row is one target's medians over the rounds, and its latencies at
// concurrency 1 over every round.
type row struct {
	t                 target
	cpu, cpuLo, cpuHi time.Duration
	allocs, bytes     float64
	allocsKnown       bool
	rps               float64
	p50, p99          time.Duration   // zero: not measured
	services          []string        // several processes: the service of each
	perService        []time.Duration // several processes: the median CPU per call of each
}

func summarize(ts []target, samples [][]sample, lat [][]time.Duration, deps map[config]*deployment) []row {
	rows := make([]row, len(ts))
	for i, t := range ts {
		s := samples[i]
		cpus := make([]time.Duration, len(s))
		var allocs, bytes, rps []float64
		known := true
		for j, x := range s {
			cpus[j] = x.cpuPerCall()
			allocs, bytes, rps = append(allocs, x.allocsPerCall()), append(bytes, x.bytesPerCall()), append(rps, x.rps())
			known = known && x.usage.allocs
		}
		slices.Sort(cpus)
		rows[i] = row{t: t, cpu: median(cpus), cpuLo: cpus[0], cpuHi: cpus[len(cpus)-1], allocs: median(allocs), bytes: median(bytes),
			allocsKnown: known, rps: median(rps)}
		if d := deps[t.cfg]; d != nil && len(d.services) > 1 {
			rows[i].services = d.services
			for k := range d.services {
				per := make([]time.Duration, len(s))
				for j, x := range s {
					per[j] = x.usage.perProc[k] / time.Duration(x.calls)
				}
				rows[i].perService = append(rows[i].perService, median(per))
			}
		}
		if l := slices.Clone(lat[i]); len(l) > 0 {
			slices.Sort(l)
			rows[i].p50, rows[i].p99 = quantile(l, 0.50), quantile(l, 0.99)
		}
	}
	return rows
}

// find returns the row of the same stack and workload as t in mode, if
// it was measured.
func find(rows []row, t target, mode string) (row, bool) {
	for _, r := range rows {
		if r.t.cfg.stack == t.cfg.stack && r.t.wl == t.wl && r.t.cfg.mode == mode {
			return r, true
		}
	}
	return row{}, false
}

// printTable prints a row per target, and its difference with the same
// stack's bare server (and trustmesh with telemetry off) on the same
// workload when they were measured.
func printTable(out io.Writer, rows []row) {
	fmt.Fprintf(out, "%-22s %-10s %7s %20s %8s %8s %7s %11s %7s %7s %7s %8s %8s\n",
		"configuration", "workload", "rps", "server µs CPU/call", "Δ bare", "Δ off", "of bare", "allocs/call", "Δ bare", "Δ off", "B/call", "p50 c=1", "p99 c=1")
	for _, r := range rows {
		var vsBare, vsOff, ofBare, allocsBare, allocsOff string
		allocs, bytes := "n/a", "n/a"
		if r.allocsKnown {
			allocs, bytes = fmt.Sprintf("%.1f", r.allocs), fmt.Sprintf("%.0f", r.bytes)
		}
		if b, ok := find(rows, r.t, modeBare); ok && r.t.cfg.mode != modeBare && r.cpu > 0 {
			vsBare = fmt.Sprintf("%+.1f", micros(r.cpu-b.cpu))
			ofBare = fmt.Sprintf("%.2f", b.cpu.Seconds()/r.cpu.Seconds())
			if r.allocsKnown && b.allocsKnown {
				allocsBare = fmt.Sprintf("%+.0f", r.allocs-b.allocs)
			}
		}
		if f, ok := find(rows, r.t, modeOff); ok && r.t.cfg.mode != modeOff && r.t.cfg.mode != modeBare && r.t.cfg.mode != modeWorkers {
			vsOff = fmt.Sprintf("%+.1f", micros(r.cpu-f.cpu))
			if r.allocsKnown && f.allocsKnown {
				allocsOff = fmt.Sprintf("%+.0f", r.allocs-f.allocs)
			}
		}
		p50, p99 := "", ""
		if r.p50 > 0 {
			p50, p99 = fmtLatency(r.p50), fmtLatency(r.p99)
		}
		fmt.Fprintf(out, "%-22s %-10s %7.0f %6.1f [%5.1f-%5.1f] %8s %8s %7s %11s %7s %7s %7s %8s %8s\n",
			r.t.cfg, r.t.wl, r.rps, micros(r.cpu), micros(r.cpuLo), micros(r.cpuHi), vsBare, vsOff, ofBare, allocs, allocsBare, allocsOff, bytes, p50, p99)
	}
	fmt.Fprintln(out, "\nserver µs CPU/call: median [min-max] over the rounds (utime+stime, 10 ms ticks; placeorder: the four processes'\n"+
		"sum per order); Δ bare, Δ off: over the same stack's bare server and trustmesh with telemetry off on the same\n"+
		"workload (µs, allocations); of bare: the bare server's CPU per call over this one's, i.e. the share of bare throughput\n"+
		"it keeps when CPU-bound; allocs and B per call: medians, heap allocations of the whole server process (background\n"+
		"work included; n/a for shop serve, which does not report them); p50 and p99 at concurrency 1 over every round's\n"+
		"calls (µs).")
	for _, r := range rows {
		if len(r.services) == 0 {
			continue
		}
		parts := make([]string, len(r.services))
		for k, svc := range r.services {
			parts[k] = fmt.Sprintf("%s %.1f", svc, micros(r.perService[k]))
		}
		fmt.Fprintf(out, "%s: server µs CPU per order by service (medians): %s\n", r.t.cfg, strings.Join(parts, ", "))
	}
}

// The bounds of issue #19 on the sample's defaults: the share of its
// stack's bare throughput (CPU per call) `shop serve NAME` keeps.
var shopBounds = map[string]float64{workloadHealth: 0.90, workloadList: 0.85}

// printChecks prints, for each STACK/shop row, the share of the bare
// server's throughput it keeps and whether that meets issue #19's bound
// (MISSED if not: a finding, not an error), and for each trustmesh
// PlaceOrder row its ratios to the bare fan-out.
func printChecks(out io.Writer, rows []row) {
	var lines []string
	for _, r := range rows {
		c := r.t.cfg
		b, ok := find(rows, r.t, modeBare)
		if !ok || c.mode == modeBare || (c.mode != modeShop && c.stack != stackPlaceOrder) {
			continue
		}
		var what string
		switch {
		case c.mode == modeShop && r.t.wl == workloadHealth:
			what = fmt.Sprintf("shop serve %s (%s) health", c.shopService(), c.stack)
		case c.mode == modeShop:
			what = fmt.Sprintf("shop serve %s (%s) ListProducts, always-on tracing", c.shopService(), c.stack)
		case c.mode == modeOff:
			what = "PlaceOrder end to end, 4 × shop serve, telemetry off"
		default:
			what = "PlaceOrder end to end, 4 × shop serve, always-on tracing"
		}
		if r.cpu <= 0 || b.cpu <= 0 {
			lines = append(lines, what+": not measured: 0 µs of server CPU per call (too few calls for /proc's 10 ms ticks: raise -calls)")
			continue
		}
		keeps := b.cpu.Seconds() / r.cpu.Seconds()
		line := fmt.Sprintf("%s: keeps %.3f of bare", what, keeps)
		if bound, ok := shopBounds[r.t.wl]; ok && c.mode == modeShop {
			verdict := "ok"
			if keeps < bound {
				verdict = "MISSED"
			}
			line += fmt.Sprintf(" (bound ≥ %.2f): %s", bound, verdict)
		}
		line += fmt.Sprintf("; server CPU per call %.1f µs, bare %.1f; %.0f rps, bare %.0f (%.2f of bare rps)",
			micros(r.cpu), micros(b.cpu), r.rps, b.rps, r.rps/b.rps)
		if r.p50 > 0 && b.p50 > 0 {
			line += fmt.Sprintf("; c=1 p50 %s µs, bare %s (%.2f×), p99 %s µs, bare %s (%.2f×)",
				fmtLatency(r.p50), fmtLatency(b.p50), r.p50.Seconds()/b.p50.Seconds(),
				fmtLatency(r.p99), fmtLatency(b.p99), r.p99.Seconds()/b.p99.Seconds())
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(out, "\nAgainst bare, from the medians above (keeps: bare CPU per call over this one's; issue #19's bounds on shop serve):")
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
}

func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quantile returns the q quantile of the sorted l (nearest rank).
func quantile(l []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(l))+0.5) - 1
	return l[min(max(i, 0), len(l)-1)]
}

func fmtLatency(d time.Duration) string { return fmt.Sprintf("%.0f", micros(d)) }

// sink is an OTLP/HTTP trace receiver that counts the spans it gets and
// drops them.
type sink struct {
	url   string
	srv   *http.Server
	spans atomic.Int64
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("meshbench: OTLP sink: %w", err)
	}
	s := &sink{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				s.spans.Add(int64(len(ss.GetSpans())))
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) close() { _ = s.srv.Close() }
