package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain makes the test binary a server when the driver under test
// starts it as one (run starts os.Executable, the test binary here).
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "serve" {
		if err := serveMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRun runs the harness for a few calls on every mode, each server in
// its own process, and checks that every configuration is measured and
// that the always-on server's spans reach the sink.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	configs := "grpc-go/bare,grpc-go/workers,grpc-go/off,grpc-go/unsampled,connect-go/undeclared,connect-go/always-on"
	err := run(context.Background(), []string{"-configs", configs, "-rounds", "2", "-calls", "40", "-warmup", "10", "-c", "4", "-conns", "2", "-latency-calls", "5"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	got := out.String()
	for c := range strings.SplitSeq(configs, ",") {
		for _, want := range []string{"round 1  " + c + " ", "round 2  " + c + " ", "\n" + c + " "} {
			if !strings.Contains(got, want) {
				t.Errorf("output has no %q:\n%s", want, got)
			}
		}
	}
	if strings.Contains(got, "OTLP sink: 0 spans received") {
		t.Errorf("no span reached the sink from connect-go/always-on:\n%s", got)
	}
}

func TestFlagErrors(t *testing.T) {
	testCases := []struct {
		name string
		args []string
		want string
	}{
		{"bad-stack", []string{"-configs", "netty/bare"}, `meshbench: configuration "netty/bare": want grpc-go/MODE, connect-go/MODE or placeorder/MODE`},
		{"bad-mode", []string{"-configs", "grpc-go/fast"}, `meshbench: configuration "grpc-go/fast": mode "fast": want bare, workers (grpc-go), off, unsampled, undeclared, always-on or shop`},
		{"connect-workers", []string{"-configs", "connect-go/workers"}, `meshbench: configuration "connect-go/workers": mode workers is grpc-go's (connect-go serves each call on net/http's goroutine)`},
		{"bad-placeorder-mode", []string{"-configs", "placeorder/unsampled"}, `meshbench: configuration "placeorder/unsampled": mode "unsampled": want bare, off or always-on`},
		{"shop-without-bare", []string{"-configs", "grpc-go/off,grpc-go/shop"}, `meshbench: configuration grpc-go/shop is checked against grpc-go/bare: add grpc-go/bare to -configs`},
		{"connect-shop-list", []string{"-configs", "connect-go/bare,connect-go/shop", "-workload", "list"}, `meshbench: configuration connect-go/shop (shop serve payments) serves no ListProducts: measure it with -workload health (or list,health)`},
		{"bad-workload", []string{"-workload", "list,ping"}, `meshbench: -workload "list,ping": want list, health or list,health`},
		{"workload-twice", []string{"-workload", "health,health"}, `meshbench: -workload "health,health": health given twice`},
		{"unbounded-settle", []string{"-settle", "2m"}, `meshbench: -settle 2m0s: want 0 to 1m`},
		{"no-timeout", []string{"-timeout", "0s"}, `meshbench: -timeout 0s: want more than 0`},
		{"twice", []string{"-configs", "grpc-go/bare,grpc-go/bare"}, `meshbench: configuration grpc-go/bare given twice`},
		{"unbounded-rounds", []string{"-rounds", "0"}, `meshbench: -rounds 0: want 1 to 20`},
		{"too-many-calls", []string{"-calls", "2000000"}, `meshbench: -calls 2000000: want 1 to 1000000`},
		{"arguments", []string{"extra"}, `meshbench: unexpected arguments ["extra"]`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || err.Error() != tc.want {
				t.Errorf("run(%q) = %v, want %s", tc.args, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("run(%q): the error is not one line: %q", tc.args, err)
			}
			if out.Len() > 0 {
				t.Errorf("run(%q) printed %q before failing on its flags", tc.args, &out)
			}
		})
	}
}

// TestRunShop runs the real `shop serve inventory` against bare grpc-go on
// both workloads at a tiny size, and checks that each row has numbers
// (allocations n/a for shop serve), that each bound of issue #19 is
// checked from measured ratios, and that shop serve's always-on spans
// reach the sink.
func TestRunShop(t *testing.T) {
	got := runOK(t, "-configs", "grpc-go/bare,grpc-go/shop", "-workload", "list,health",
		"-rounds", "1", "-calls", "2000", "-warmup", "100", "-c", "4", "-conns", "2", "-latency-calls", "20")
	for _, wl := range []string{"list", "health"} {
		wantRow(t, got, "grpc-go/bare", wl)
		if line := wantRow(t, got, "grpc-go/shop", wl); !strings.Contains(line, " n/a ") {
			t.Errorf("grpc-go/shop %s: allocations not n/a: %q", wl, line)
		}
	}
	wantKeeps(t, got, `shop serve inventory (grpc-go) health: keeps `, ` of bare \(bound ≥ 0\.90\): (ok|MISSED);`)
	wantKeeps(t, got, `shop serve inventory (grpc-go) ListProducts, always-on tracing: keeps `, ` of bare \(bound ≥ 0\.85\): (ok|MISSED);`)
	if n := spans(t, got); n < 2000 {
		t.Errorf("the sink received %d spans from shop serve's 2,120 traced ListProducts, want at least the 2,000 measured:\n%s", n, got)
	}
}

// TestRunPlaceOrder runs the four-service PlaceOrder on bare servers and
// on four `shop serve` processes with telemetry off and always on, at a
// tiny size, together with connect-go/shop under -workload list,health
// (its health row only), and checks the rows, the ratios to bare, the
// per-service breakdown and the spans.
func TestRunPlaceOrder(t *testing.T) {
	got := runOK(t, "-configs", "placeorder/bare,placeorder/off,placeorder/always-on,connect-go/bare,connect-go/shop", "-workload", "list,health",
		"-rounds", "1", "-calls", "1000", "-warmup", "20", "-c", "4", "-conns", "2", "-latency-calls", "10", "-settle", "100ms")
	for _, c := range []string{"placeorder/bare", "placeorder/off", "placeorder/always-on"} {
		wantRow(t, got, c, "placeorder")
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c) + `: server µs CPU per order by service \(medians\): inventory ([0-9.]+), payments ([0-9.]+), orders ([0-9.]+), gateway ([0-9.]+)$`)
		m := re.FindStringSubmatch(got)
		if m == nil {
			t.Errorf("no per-service CPU of %s:\n%s", c, got)
			continue
		}
		for _, v := range m[1:] {
			if f, _ := strconv.ParseFloat(v, 64); f <= 0 {
				t.Errorf("%s: a service used no CPU: %q", c, m[0])
			}
		}
	}
	if line := wantRow(t, got, "placeorder/bare", "placeorder"); strings.Contains(line, "n/a") {
		t.Errorf("placeorder/bare: allocations n/a, want this binary's servers' counts: %q", line)
	}
	wantRow(t, got, "connect-go/bare", "list")
	wantRow(t, got, "connect-go/bare", "health")
	wantRow(t, got, "connect-go/shop", "health")
	if strings.Contains(got, "connect-go/shop        list") {
		t.Errorf("connect-go/shop (shop serve payments, no ListProducts) has a list row:\n%s", got)
	}
	wantKeeps(t, got, `PlaceOrder end to end, 4 × shop serve, telemetry off: keeps `, ` of bare;`)
	wantKeeps(t, got, `PlaceOrder end to end, 4 × shop serve, always-on tracing: keeps `, ` of bare;`)
	wantKeeps(t, got, `shop serve payments (connect-go) health: keeps `, ` of bare \(bound ≥ 0\.90\): (ok|MISSED);`)
	// Each of the 1,030 orders of placeorder/always-on makes at least the
	// four services' server spans; placeorder/off exports none.
	if n := spans(t, got); n < 4*1030 {
		t.Errorf("the sink received %d spans, want at least 4 per order of placeorder/always-on:\n%s", n, got)
	}
}

// TestRunStopsEverything cancels a run in its first round and checks that
// every process it started (this binary's servers, the four shop serve
// processes) has exited.
func TestRunStopsEverything(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelWriter{on: "round 1 ", cancel: cancel}
	err := run(ctx, []string{"-configs", "grpc-go/bare,placeorder/off", "-rounds", "2", "-calls", "200", "-warmup", "10",
		"-latency-calls", "0", "-settle", "0s"}, out)
	if err == nil {
		t.Fatalf("run cancelled in round 1 succeeded:\n%s", out.String())
	}
	if !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("run = %v, want the cancellation", err)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes still running after run returned: %v", kids)
	}
}

// cancelWriter collects the output and calls cancel once a line starting
// with on is written.
type cancelWriter struct {
	on     string
	cancel func()
	mu     sync.Mutex
	b      bytes.Buffer
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.HasPrefix(p, []byte(w.on)) {
		w.cancel()
	}
	return w.b.Write(p)
}

func (w *cancelWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// children lists the processes whose parent is this one.
func children(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if fields := strings.Fields(s[i+1:]); len(fields) > 1 && fields[1] == self {
			out = append(out, s[:i+1])
		}
	}
	return out
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := run(ctx, append(args, "-timeout", "3m"), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	return out.String()
}

// wantRow finds the table row of configuration c under workload wl and
// checks that its rps and server CPU per call are positive numbers.
func wantRow(t *testing.T, got, c, wl string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c) + ` +` + wl + ` +([0-9]+) +([0-9.]+) \[.*$`)
	m := re.FindStringSubmatch(got)
	if m == nil {
		t.Errorf("no table row for %s %s:\n%s", c, wl, got)
		return ""
	}
	for _, v := range m[1:3] {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
			t.Errorf("%s %s: rps or CPU per call not a positive number: %q", c, wl, m[0])
		}
	}
	return m[0]
}

// wantKeeps checks that got has a line that starts with prefix, then a
// positive RATIO with three decimals, then what the regular expression
// suffix matches.
func wantKeeps(t *testing.T, got, prefix, suffix string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `([0-9]+\.[0-9]{3})` + suffix)
	m := re.FindStringSubmatch(got)
	if m == nil {
		t.Errorf("no line %q RATIO %q:\n%s", prefix, suffix, got)
		return
	}
	if f, _ := strconv.ParseFloat(m[1], 64); f <= 0 {
		t.Errorf("ratio not positive: %q", m[0])
	}
}

func spans(t *testing.T, got string) int {
	t.Helper()
	m := regexp.MustCompile(`OTLP sink: ([0-9]+) spans received`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no span count:\n%s", got)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestChecks checks the verdicts against issue #19's bounds from
// measurements just above, at and just below each bound: a missed bound
// is a MISSED line, not an error.
func TestChecks(t *testing.T) {
	us := func(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }
	cfg := func(stack, mode string) config { return config{stack, mode} }
	rows := []row{
		{t: target{cfg(stackGRPC, modeBare), workloadHealth}, cpu: us(45), rps: 20000},
		{t: target{cfg(stackGRPC, modeShop), workloadHealth}, cpu: us(50), rps: 18000}, // 0.900: ok
		{t: target{cfg(stackGRPC, modeBare), workloadList}, cpu: us(40), rps: 19000},
		{t: target{cfg(stackGRPC, modeShop), workloadList}, cpu: us(47.5), rps: 15000}, // 0.842: missed
		{t: target{cfg(stackConnect, modeBare), workloadHealth}, cpu: us(100), rps: 9000},
		{t: target{cfg(stackConnect, modeShop), workloadHealth}, cpu: us(0), rps: 9000}, // too few calls
		{t: target{cfg(stackPlaceOrder, modeBare), workloadPlaceOrder}, cpu: us(1000), rps: 900},
		{t: target{cfg(stackPlaceOrder, modeOff), workloadPlaceOrder}, cpu: us(4000), rps: 300},
	}
	var out bytes.Buffer
	printChecks(&out, rows)
	for _, want := range []string{
		"shop serve inventory (grpc-go) health: keeps 0.900 of bare (bound ≥ 0.90): ok; server CPU per call 50.0 µs, bare 45.0; 18000 rps, bare 20000 (0.90 of bare rps)\n",
		"shop serve inventory (grpc-go) ListProducts, always-on tracing: keeps 0.842 of bare (bound ≥ 0.85): MISSED; server CPU per call 47.5 µs, bare 40.0; 15000 rps, bare 19000 (0.79 of bare rps)\n",
		"shop serve payments (connect-go) health: not measured: 0 µs of server CPU per call (too few calls for /proc's 10 ms ticks: raise -calls)\n",
		"PlaceOrder end to end, 4 × shop serve, telemetry off: keeps 0.250 of bare; server CPU per call 4000.0 µs, bare 1000.0; 300 rps, bare 900 (0.33 of bare rps)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("checks have no %q:\n%s", want, &out)
		}
	}
}
