package tracetree

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/internal/testsync"
)

// fakeClock drives a Printer whose timers are too long to fire during a
// test; the test calls flushDue itself.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestPrinter(t *testing.T, opts ...Option) (*Printer, *fakeClock, *testsync.Buffer) {
	t.Helper()
	var out testsync.Buffer
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	opts = append([]Option{WithQuietPeriod(time.Hour), WithMaxWait(10 * time.Hour)}, opts...)
	p := NewPrinter(&out, opts...)
	p.now = clock.Now
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, clock, &out
}

func rec(tid, id, parent byte, name string) spanRecord {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(id) * time.Millisecond)
	return spanRecord{
		traceID: trace.TraceID{15: tid}, spanID: trace.SpanID{7: id}, parentID: trace.SpanID{7: parent},
		service: "svc", name: name, kind: trace.SpanKindServer, start: start, end: start.Add(time.Millisecond),
	}
}

func TestPrinterWaitsForRootAndQuietPeriod(t *testing.T) {
	t.Parallel()
	p, clock, out := newTestPrinter(t)
	p.add(rec(1, 2, 1, "child"))
	clock.Advance(2 * time.Hour) // no root yet: not due before max wait
	p.flushDue()
	if got := out.String(); got != "" {
		t.Fatalf("printed before the root ended:\n%s", got)
	}
	p.add(rec(1, 1, 0, "root"))
	clock.Advance(30 * time.Minute)
	p.add(rec(1, 3, 1, "late-sibling")) // restarts the quiet period
	clock.Advance(45 * time.Minute)
	p.flushDue()
	if got := out.String(); got != "" {
		t.Fatalf("printed within the quiet period:\n%s", got)
	}
	clock.Advance(15 * time.Minute)
	p.flushDue()
	want := "trace 00000000000000000000000000000001\n" +
		"svc     server  root          1ms\n" +
		"├─ svc  server  child         1ms\n" +
		"└─ svc  server  late-sibling  1ms\n\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}

	// A span of a printed trace comes out on its own, marked late.
	p.add(rec(1, 4, 3, "straggler"))
	clock.Advance(time.Hour)
	p.flushDue()
	want += "trace 00000000000000000000000000000001 (late spans)\nsvc  server  straggler  1ms\n\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}
}

func TestPrinterMaxWaitPrintsIncomplete(t *testing.T) {
	t.Parallel()
	p, clock, out := newTestPrinter(t)
	p.add(rec(1, 2, 1, "orphan"))
	clock.Advance(10 * time.Hour)
	p.flushDue()
	want := "trace 00000000000000000000000000000001 (incomplete)\nsvc  server  orphan  1ms\n\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}
}

func TestPrinterBounds(t *testing.T) {
	t.Parallel()
	p, clock, out := newTestPrinter(t, WithMaxTraces(2), WithMaxSpans(2))
	p.add(rec(1, 1, 0, "first")) // oldest: evicted by trace 3
	clock.Advance(time.Second)
	p.add(rec(2, 1, 0, "second"))
	p.add(rec(2, 2, 1, "kept"))
	p.add(rec(2, 3, 1, "over-max-spans"))
	clock.Advance(time.Second)
	p.add(rec(3, 1, 0, "third"))
	p.add(rec(4, 1, 0, "grpc.health.v1.Health/Check")) // never buffered
	if got := p.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2 (one span over the per-trace bound, one evicted trace)", got)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, s := range []string{"first", "over-max-spans", "Health"} {
		if strings.Contains(got, s) {
			t.Errorf("output has %q:\n%s", s, got)
		}
	}
	for _, s := range []string{"second", "kept", "third"} {
		if !strings.Contains(got, s) {
			t.Errorf("output lacks %q:\n%s", s, got)
		}
	}
}

func TestPrinterShutdown(t *testing.T) {
	t.Parallel()
	p, _, out := newTestPrinter(t)
	p.add(rec(1, 1, 0, "root"))
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.add(rec(2, 2, 1, "pending"))
	for range 2 {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	p.add(rec(3, 1, 0, "after-shutdown"))
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "trace 00000000000000000000000000000001\nsvc  server  root  1ms\n\n" +
		"trace 00000000000000000000000000000002 (incomplete)\nsvc  server  pending  1ms\n\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}
}
