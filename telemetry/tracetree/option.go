package tracetree

import "time"

// Option configures [NewPrinter] and [ServeReceiver].
type Option interface {
	applyToPrinter(*config)
}

type config struct {
	quiet     time.Duration
	maxWait   time.Duration
	maxTraces int
	maxSpans  int
}

// Default bounds of a [Printer].
const (
	// DefaultQuietPeriod is how long a Printer waits, after the root span of
	// a trace ended, for more spans of that trace before printing it.
	DefaultQuietPeriod = 100 * time.Millisecond
	// DefaultReceiverQuietPeriod is the quiet period [ServeReceiver] uses:
	// spans of one trace arrive from several processes, each on its own
	// export schedule (OTEL_BSP_SCHEDULE_DELAY, 5s by default; set it lower
	// on the services for prompt trees).
	DefaultReceiverQuietPeriod = 2 * time.Second
	// DefaultMaxWait is how long a trace may stay buffered, counted from its
	// first ended span, before it is printed even without its root span.
	DefaultMaxWait = 30 * time.Second
	// DefaultMaxTraces is how many traces a Printer buffers at once.
	DefaultMaxTraces = 1024
	// DefaultMaxSpans is how many spans a Printer buffers per trace.
	DefaultMaxSpans = 512
)

// WithQuietPeriod sets how long the printer waits after a trace's root span
// ended, and after each later span of that trace, before printing it. Zero
// prints as soon as the root span ends. Negative values are ignored. By
// default, [DefaultQuietPeriod] ([DefaultReceiverQuietPeriod] in
// [ServeReceiver]).
func WithQuietPeriod(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d >= 0 {
			c.quiet = d
		}
	})
}

// WithMaxWait sets how long a trace may stay buffered, counted from its first
// ended span, before it is printed without its root span (a long stream, a
// process that never exported its part). Values <= 0 are ignored. By default,
// [DefaultMaxWait].
func WithMaxWait(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.maxWait = d
		}
	})
}

// WithMaxTraces bounds the number of traces buffered at once; when a new
// trace would exceed it, the oldest buffered trace is dropped and counted in
// [Printer.Dropped]. Values <= 0 are ignored. By default,
// [DefaultMaxTraces].
func WithMaxTraces(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxTraces = n
		}
	})
}

// WithMaxSpans bounds the number of spans buffered per trace; further spans
// are dropped and counted in [Printer.Dropped]. Values <= 0 are ignored.
// By default, [DefaultMaxSpans].
func WithMaxSpans(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxSpans = n
		}
	})
}

type optionFunc func(*config)

func (f optionFunc) applyToPrinter(c *config) { f(c) }
