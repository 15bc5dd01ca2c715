package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func printHeader(out io.Writer, o options) {
	godebug := o.godebug
	if godebug == "" {
		godebug = os.Getenv("GODEBUG")
		if godebug == "" {
			godebug = "unset (adaptive stack start on; -godebug adaptivestackstart=0 for a like-for-like run)"
		}
	}
	fmt.Fprintf(out, "meshbench: %s %s/%s, %d CPUs, load average %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAvg())
	fmt.Fprintf(out, "%d rounds of %d calls per configuration, %d callers over %d connections, %d calls at concurrency 1 per round; caller sends traceparent and baggage: %v\n",
		o.rounds, o.calls, o.concurrency, o.conns, o.latencyCalls, o.propagate)
	fmt.Fprintf(out, "servers' GODEBUG: %s\n\n", godebug)
}

// printTable prints, per configuration, the medians over the rounds and
// the latencies at concurrency 1 over every round, and the difference with
// the same stack's bare server when it was measured.
func printTable(out io.Writer, o options, samples [][]sample, lat [][]time.Duration) {
	type row struct {
		cpu, cpuLo, cpuHi time.Duration
		allocs, bytes     float64
		rps               float64
	}
	rows := make([]row, len(o.configs))
	bare, off := map[string]int{}, map[string]int{}
	for i, c := range o.configs {
		s := samples[i]
		cpus := make([]time.Duration, len(s))
		var allocs, bytes, rps []float64
		for j, x := range s {
			cpus[j] = x.cpuPerCall()
			allocs, bytes, rps = append(allocs, x.allocsPerCall()), append(bytes, x.bytesPerCall()), append(rps, x.rps())
		}
		slices.Sort(cpus)
		rows[i] = row{cpu: median(cpus), cpuLo: cpus[0], cpuHi: cpus[len(cpus)-1], allocs: median(allocs), bytes: median(bytes), rps: median(rps)}
		switch c.mode {
		case modeBare:
			bare[c.stack] = i
		case modeOff:
			off[c.stack] = i
		}
	}
	fmt.Fprintf(out, "%-22s %7s %20s %8s %8s %7s %11s %7s %7s %7s %8s %8s\n",
		"configuration", "rps", "server µs CPU/call", "Δ bare", "Δ off", "of bare", "allocs/call", "Δ bare", "Δ off", "B/call", "p50 c=1", "p99 c=1")
	for i, c := range o.configs {
		r := rows[i]
		var vsBare, vsOff, ofBare, allocsBare, allocsOff string
		if b, ok := bare[c.stack]; ok && b != i && r.cpu > 0 {
			vsBare = fmt.Sprintf("%+.1f", micros(r.cpu-rows[b].cpu))
			ofBare = fmt.Sprintf("%.2f", rows[b].cpu.Seconds()/r.cpu.Seconds())
			allocsBare = fmt.Sprintf("%+.0f", r.allocs-rows[b].allocs)
		}
		if f, ok := off[c.stack]; ok && f != i && c.mode != modeBare {
			vsOff = fmt.Sprintf("%+.1f", micros(r.cpu-rows[f].cpu))
			allocsOff = fmt.Sprintf("%+.0f", r.allocs-rows[f].allocs)
		}
		p50, p99 := "", ""
		if l := slices.Clone(lat[i]); len(l) > 0 {
			slices.Sort(l)
			p50, p99 = fmtLatency(quantile(l, 0.50)), fmtLatency(quantile(l, 0.99))
		}
		fmt.Fprintf(out, "%-22s %7.0f %6.1f [%5.1f-%5.1f] %8s %8s %7s %11.1f %7s %7s %7.0f %8s %8s\n",
			c, r.rps, micros(r.cpu), micros(r.cpuLo), micros(r.cpuHi), vsBare, vsOff, ofBare, r.allocs, allocsBare, allocsOff, r.bytes, p50, p99)
	}
	fmt.Fprintln(out, "\nserver µs CPU/call: median [min-max] over the rounds (utime+stime, 10 ms ticks); Δ bare, Δ off: over the same\n"+
		"stack's bare server and trustmesh with telemetry off (µs, allocations); of bare: the bare server's CPU per call over\n"+
		"this one's, i.e. the share of bare throughput it keeps when CPU-bound; allocs and B per call: medians, heap\n"+
		"allocations of the whole server process (background work included); p50 and p99 at concurrency 1 over every\n"+
		"round's calls (µs).")
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
