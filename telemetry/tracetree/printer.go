package tracetree

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// recentTraces is how many printed trace IDs a Printer remembers, so that
// spans arriving after their trace was printed are printed promptly as late.
const recentTraces = 256

// Printer is an [sdktrace.SpanProcessor] that prints each finished trace
// as a readable tree (the format of [Format]). It buffers ended spans per
// trace; once a root span (one without a parent) has ended and no further span
// of its trace has ended for the quiet period ([WithQuietPeriod]), it prints
// the trace. A trace whose root never ends here is printed, marked
// "(incomplete)", after [WithMaxWait]; spans that arrive after their trace was
// printed are printed as a trace marked "(late spans)". Only sampled spans are
// printed, and gRPC health checks never.
//
// Memory is bounded: at most [WithMaxTraces] traces of at most [WithMaxSpans]
// spans are buffered, and only the few fields a tree line shows are kept.
// When a new trace would exceed the bound, the oldest one is dropped;
// [Printer.Dropped] counts the spans lost either way.
//
// Trees are written from a timer goroutine, whole trees per Write call, so
// ending a span never waits for the writer.
type Printer struct {
	w   io.Writer
	cfg config
	now func() time.Time // replaced in tests

	mu      sync.Mutex
	traces  map[trace.TraceID]*pendingTrace
	recent  map[trace.TraceID]struct{}
	ring    [recentTraces]trace.TraceID
	ringPos int
	timer   *time.Timer
	nextAt  time.Time // when timer fires; zero when not armed
	closed  bool
	writing sync.WaitGroup // trees taken from traces but not yet written

	wmu     sync.Mutex // serializes writes to w
	dropped atomic.Uint64
}

type pendingTrace struct {
	spans       []spanRecord
	first, last time.Time // when the first and the latest span arrived
	rootEnded   bool
	late        bool // the trace was printed before
}

var _ sdktrace.SpanProcessor = (*Printer)(nil)

// NewPrinter returns a Printer that writes to w. Shut it down (or the
// tracer provider it is registered with) to print the traces still buffered.
func NewPrinter(w io.Writer, opts ...Option) *Printer {
	cfg := config{
		quiet:     DefaultQuietPeriod,
		maxWait:   DefaultMaxWait,
		maxTraces: DefaultMaxTraces,
		maxSpans:  DefaultMaxSpans,
	}
	for _, o := range opts {
		o.applyToPrinter(&cfg)
	}
	return &Printer{
		w:      w,
		cfg:    cfg,
		now:    time.Now,
		traces: map[trace.TraceID]*pendingTrace{},
		recent: map[trace.TraceID]struct{}{},
	}
}

// OnStart does nothing; it is part of [sdktrace.SpanProcessor].
func (*Printer) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd buffers s if it is sampled; it is part of [sdktrace.SpanProcessor].
func (p *Printer) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || isHealthCheck(s.Name()) {
		return
	}
	p.add(recordFromSpan(s))
}

// Dropped returns how many spans were never printed because a buffer bound
// was reached.
func (p *Printer) Dropped() uint64 { return p.dropped.Load() }

// ForceFlush prints every buffered trace now, complete or not.
func (p *Printer) ForceFlush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	out := p.takeLocked(func(*pendingTrace) bool { return true })
	p.mu.Unlock()
	p.write(out)
	return nil
}

// Shutdown prints every buffered trace, waits for trees being written, and
// stops the printer: later spans are ignored. It is idempotent.
func (p *Printer) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.nextAt = time.Time{}
	}
	out := p.takeLocked(func(*pendingTrace) bool { return true })
	p.mu.Unlock()
	p.write(out)
	done := make(chan struct{})
	go func() {
		p.writing.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add buffers one span.
func (p *Printer) add(r spanRecord) {
	if isHealthCheck(r.name) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := p.now()
	t := p.traces[r.traceID]
	if t == nil {
		if len(p.traces) >= p.cfg.maxTraces {
			p.evictOldestLocked()
		}
		_, late := p.recent[r.traceID]
		t = &pendingTrace{first: now, late: late}
		p.traces[r.traceID] = t
	}
	if len(t.spans) >= p.cfg.maxSpans {
		p.dropped.Add(1)
		return
	}
	t.spans = append(t.spans, r)
	t.last = now
	if !r.parentID.IsValid() {
		t.rootEnded = true
	}
	if at := p.deadline(t); p.nextAt.IsZero() || at.Before(p.nextAt) {
		p.armLocked(at, now)
	}
}

// deadline returns when t is due for printing.
func (p *Printer) deadline(t *pendingTrace) time.Time {
	at := t.first.Add(p.cfg.maxWait)
	if t.rootEnded || t.late {
		if q := t.last.Add(p.cfg.quiet); q.Before(at) {
			at = q
		}
	}
	return at
}

func (p *Printer) armLocked(at, now time.Time) {
	p.nextAt = at
	d := at.Sub(now)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.flushDue)
	} else {
		p.timer.Reset(d)
	}
}

func (p *Printer) evictOldestLocked() {
	var oldest trace.TraceID
	var first time.Time
	for id, t := range p.traces {
		if first.IsZero() || t.first.Before(first) {
			oldest, first = id, t.first
		}
	}
	p.dropped.Add(uint64(len(p.traces[oldest].spans)))
	delete(p.traces, oldest)
}

// flushDue prints the traces that are due and re-arms the timer for the rest.
func (p *Printer) flushDue() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	now := p.now()
	out := p.takeLocked(func(t *pendingTrace) bool { return !p.deadline(t).After(now) })
	p.nextAt = time.Time{}
	var next time.Time
	for _, t := range p.traces {
		if at := p.deadline(t); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		p.armLocked(next, now)
	}
	p.mu.Unlock()
	p.write(out)
}

// takeLocked removes the traces for which due is true and returns them,
// oldest first. Unless closed, the caller must pass the result to p.write.
func (p *Printer) takeLocked(due func(*pendingTrace) bool) []*pendingTrace {
	var taken []*pendingTrace
	for id, t := range p.traces {
		if !due(t) {
			continue
		}
		taken = append(taken, t)
		delete(p.traces, id)
		if _, ok := p.recent[id]; !ok {
			delete(p.recent, p.ring[p.ringPos])
			p.ring[p.ringPos] = id
			p.ringPos = (p.ringPos + 1) % recentTraces
			p.recent[id] = struct{}{}
		}
	}
	p.writing.Add(1)
	slices.SortFunc(taken, func(a, b *pendingTrace) int { return a.first.Compare(b.first) })
	return taken
}

// write prints the trees of traces taken by takeLocked, each followed by a
// blank line, and marks that work done.
func (p *Printer) write(traces []*pendingTrace) {
	defer p.writing.Done()
	if len(traces) == 0 {
		return
	}
	var b strings.Builder
	for _, t := range traces {
		note := ""
		switch {
		case t.late:
			note = "(late spans)"
		case !t.rootEnded:
			note = "(incomplete)"
		}
		writeTrace(&b, t.spans, note)
		b.WriteByte('\n')
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, _ = io.WriteString(p.w, b.String())
}
