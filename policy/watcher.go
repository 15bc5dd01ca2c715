package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/trustmesh/trustmesh/internal/filewatch"
)

// Watcher holds the engine compiled from a policy file and recompiles it
// when the file changes (hot reload). A file that does not parse, compile
// or pass the checks is rejected, the error is logged, and the last good
// engine stays in force. A Watcher is a [Source].
//
// Metrics (through the meter provider, see [WithMeterProvider]):
//
//	trustmesh.policy.reloads  counter, attribute result=success|failure: reload attempts after the first load
//	trustmesh.policy.rules    gauge: rules in the engine in force
type Watcher struct {
	path   string
	cfg    watcherConfig
	engine atomic.Pointer[Engine]

	mu     sync.Mutex
	checks []*checkEntry // added by AddCheck, in order

	fw      *filewatch.Watcher
	reloads metric.Int64Counter
	gauge   metric.Registration
}

// checkEntry is one check added by [Watcher.AddCheck]; its address tells
// it from the others.
type checkEntry struct{ f func(*Engine) error }

var _ Source = (*Watcher)(nil)

// DefaultDebounce is how long a [Watcher] waits after the last change it
// sees before it reads the file, and then between the two reads that must
// agree before a change is applied (see [NewWatcher]).
const DefaultDebounce = 100 * time.Millisecond

const meterName = "github.com/trustmesh/trustmesh/policy"

// NewWatcher loads the policy file at path (see [LoadFile]), merges the
// base policies (see [WithBase]), compiles it (see [WithCompileOptions]),
// runs the checks (see [WithCheck]) and then watches the file. It fails
// with the error of this first load, so that a server does not start with
// a bad policy.
//
// It watches the file's directory, so that a file replaced by a rename (an
// editor's or an atomic write) is seen, and it follows symlinks all the
// way: the directory of each link on the way to the file is watched, and
// the directory of the file the links lead to, so that an edit of the
// target, a re-pointed link and a Kubernetes ConfigMap's ..data swap are
// all seen. Once a change has settled (no change for the debounce, see
// [WithDebounce]) the file is read twice, a debounce apart; only if both
// reads agree (same bytes, size, modification time and target) is the
// policy reloaded, so a file still being written is not applied, unless
// its writer pauses for longer than that: replace the file atomically
// (write a new file and rename it over the old one, or use a ConfigMap).
// Contents equal to the last ones tried are ignored.
//
// The watcher stops when ctx is done or [Watcher.Close] is called; the
// engine in force stays available.
func NewWatcher(ctx context.Context, path string, opts ...WatcherOption) (*Watcher, error) {
	cfg := watcherConfig{debounce: DefaultDebounce}
	for _, o := range opts {
		o.applyToWatcher(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.meterProvider == nil {
		cfg.meterProvider = otel.GetMeterProvider()
	}
	w := &Watcher{path: path, cfg: cfg}

	data, _, err := w.read()
	if err != nil {
		return nil, err
	}
	e, err := w.build(data, nil)
	if err != nil {
		return nil, err
	}
	w.engine.Store(e)
	if err := w.registerMetrics(); err != nil {
		return nil, err
	}
	if w.fw, err = filewatch.Start(ctx, filewatch.Config[[]byte]{
		Name:      "policy",
		Files:     []string{path},
		Settle:    cfg.debounce,
		Loaded:    data,
		Read:      w.read,
		Reload:    w.reload,
		Reject:    w.reject,
		Logger:    cfg.logger,
		Stopped:   func() error { return w.gauge.Unregister() },
		AfterRead: cfg.afterRead,
	}); err != nil {
		return nil, errors.Join(err, w.gauge.Unregister())
	}
	return w, nil
}

// registerMetrics creates the reload counter and registers the rules gauge.
func (w *Watcher) registerMetrics() error {
	meter := w.cfg.meterProvider.Meter(meterName)
	var err error
	if w.reloads, err = meter.Int64Counter("trustmesh.policy.reloads",
		metric.WithDescription("Policy reload attempts after the first load, by result (success or failure)."),
		metric.WithUnit("{reload}")); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	rules, err := meter.Int64ObservableGauge("trustmesh.policy.rules",
		metric.WithDescription("Rules in the policy in force."),
		metric.WithUnit("{rule}"))
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if w.gauge, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(rules, int64(w.Engine().Rules()))
		return nil
	}, rules); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

// Engine returns the engine in force. It does not lock and is safe to call
// concurrently with reloads, and after Close.
func (w *Watcher) Engine() *Engine { return w.engine.Load() }

// AddCheck adds check to the checks that every reload after the first load
// must pass, after those of [WithCheck], in the order added: a reload that
// a check refuses is rejected like a policy that does not compile, and the
// last good engine stays in force. A server uses it to refuse a policy
// that would leave a method it serves uncovered (see [Engine.Covers]).
//
// It returns a function that removes check; calling that more than once
// does nothing. AddCheck and the remove functions are safe for concurrent
// use, with each other and with reloads; a reload already running may or
// may not run a check added or removed meanwhile. A nil check is ignored.
func (w *Watcher) AddCheck(check func(*Engine) error) (remove func()) {
	if check == nil {
		return func() {}
	}
	c := &checkEntry{f: check}
	w.mu.Lock()
	w.checks = append(w.checks, c)
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.checks = slices.DeleteFunc(w.checks, func(o *checkEntry) bool { return o == c })
		w.mu.Unlock()
	}
}

// Close stops watching and waits until the watcher's goroutine has
// returned. It is safe to call more than once; the engine in force stays
// available. Close must not be called from the [WithOnUpdate] callback or
// a check.
func (w *Watcher) Close() error { return w.fw.Close() }

// read reads the file; the contents stand for themselves.
func (w *Watcher) read() ([]byte, []byte, error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	return data, data, nil
}

// reload swaps in the engine compiled from data, or says why not.
func (w *Watcher) reload(ctx context.Context, data []byte) error {
	w.mu.Lock()
	added := make([]func(*Engine) error, len(w.checks))
	for i, c := range w.checks {
		added[i] = c.f
	}
	w.mu.Unlock()
	e, err := w.build(data, added)
	if err != nil {
		return err
	}
	w.engine.Store(e)
	w.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "success")))
	w.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "policy: reloaded",
		slog.String("file", w.path), slog.Int("rules", e.Rules()))
	if w.cfg.onUpdate != nil {
		w.cfg.onUpdate(e, nil)
	}
	return nil
}

// reject reports a change that was not put in force.
func (w *Watcher) reject(ctx context.Context, err error) {
	w.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "failure")))
	w.cfg.logger.LogAttrs(ctx, slog.LevelError, "policy: reload rejected; the last good policy stays in force",
		slog.String("file", w.path), slog.String("error", err.Error()))
	if w.cfg.onUpdate != nil {
		w.cfg.onUpdate(w.Engine(), err)
	}
}

// build parses data, merges the base policies, compiles, and runs the
// checks of WithCheck, then the added ones.
func (w *Watcher) build(data []byte, added []func(*Engine) error) (*Engine, error) {
	p, err := Parse(w.path, data)
	if err != nil {
		return nil, err
	}
	e, err := Compile(Merge(p, w.cfg.base...), w.cfg.compile...)
	if err != nil {
		return nil, err
	}
	for _, check := range slices.Concat(w.cfg.checks, added) {
		if err := check(e); err != nil {
			return nil, fmt.Errorf("%s: %w", w.path, err)
		}
	}
	return e, nil
}

// WatcherOption configures a [Watcher].
type WatcherOption interface {
	applyToWatcher(*watcherConfig)
}

type watcherConfig struct {
	debounce      time.Duration
	base          []Policy
	compile       []CompileOption
	checks        []func(*Engine) error
	logger        *slog.Logger
	onUpdate      func(*Engine, error)
	meterProvider metric.MeterProvider
	afterRead     func([]byte) // for tests
}

type watcherOptionFunc func(*watcherConfig)

func (f watcherOptionFunc) applyToWatcher(c *watcherConfig) { f(c) }

// WithDebounce sets how long the watcher waits after the last change it
// sees before it reads the file, and then between the two reads that must
// agree (see [NewWatcher]). By default, it waits [DefaultDebounce]; 0 or
// less reads at once, and no longer protects from a half-written file.
func WithDebounce(d time.Duration) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.debounce = max(d, 0) })
}

// WithBase merges p into every policy loaded from the file, after the
// file's rules (see [Merge]): the rules declared in proto options, for
// instance (see [FromServices]). Given more than once, the policies are
// merged in order. The file's dry_run decides whether the merged policy is
// in dry-run; a base in dry-run only reports its own deny rules' denials,
// and its allow rules are refused when the file is not in dry-run. By
// default, the file is the whole policy.
func WithBase(p Policy) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.base = append(c.base, p) })
}

// WithCompileOptions passes opts to every [Compile]: [ForServer], for
// instance, so that rules with an At list apply on this server. By
// default, there are none.
func WithCompileOptions(opts ...CompileOption) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.compile = append(c.compile, opts...) })
}

// WithCheck runs check on every compiled engine before it is put in force,
// the first one included; an error rejects the policy like a parse error
// would. A coverage check (every served method has an allow rule, see
// [Engine.Covers]) is the usual one. Given more than once, every check
// runs, in order. By default, there is no check; a nil check is ignored.
// For a check known only once the watcher exists, see [Watcher.AddCheck].
func WithCheck(check func(*Engine) error) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) {
		if check != nil {
			c.checks = append(c.checks, check)
		}
	})
}

// WithLogger sets the logger for reloads: each success at Info, each
// rejected file at Error (with the reason, never the policy's contents).
// By default, and when l is nil, nothing is logged.
func WithLogger(l *slog.Logger) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.logger = l })
}

// WithOnUpdate sets a function called after every reload attempt (not the
// first load), from the watcher's goroutine: with the new engine and a nil
// error on success, or with the engine still in force and the reason on
// failure. It must not block for long or call [Watcher.Close]. By default,
// there is none.
func WithOnUpdate(f func(e *Engine, err error)) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.onUpdate = f })
}

// WithMeterProvider sets where the watcher's metrics go. By default, and
// when mp is nil, they go to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.meterProvider = mp })
}
