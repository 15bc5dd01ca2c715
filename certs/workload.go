package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// EndpointSocketEnv is the environment variable through which SPIFFE
// tells a workload where the Workload API is, e.g.
// unix:///run/spire/sockets/agent.sock.
const EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// DefaultStartTimeout is how long [NewWorkloadSource] waits for the first
// SVID unless [WithStartTimeout] says otherwise.
const DefaultStartTimeout = 30 * time.Second

// WorkloadOption configures [NewWorkloadSource].
type WorkloadOption interface {
	applyToWorkload(*workloadConfig)
}

type workloadConfig struct {
	startTimeout time.Duration
	meters       metric.MeterProvider
	id           spiffeid.ID
}

type workloadOptionFunc func(*workloadConfig)

func (f workloadOptionFunc) applyToWorkload(c *workloadConfig) { f(c) }

// WithStartTimeout bounds how long [NewWorkloadSource] waits for the first
// SVID (the context's own deadline applies too). By default, it is
// [DefaultStartTimeout]. A zero or negative duration leaves the default.
func WithStartTimeout(d time.Duration) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) {
		if d > 0 {
			c.startTimeout = d
		}
	})
}

// WithMeterProvider sets the meter provider that receives the
// [ExpiryMetric] gauge. By default, it is otel.GetMeterProvider(). A nil
// provider leaves the default.
func WithMeterProvider(mp metric.MeterProvider) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) {
		if mp != nil {
			c.meters = mp
		}
	})
}

// WithSVIDID picks, among the SVIDs the Workload API offers, the one with
// SPIFFE ID id; the start fails if there is none. By default, the source
// uses the first SVID, which is the Workload API's default. A zero ID
// leaves the default.
func WithSVIDID(id spiffeid.ID) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.id = id })
}

// WorkloadSource is an X.509-SVID and trust bundle source fed by the SPIFFE
// Workload API (a SPIRE agent in production): a thin wrapper around
// go-spiffe's workloadapi.X509Source that bounds the start, explains a
// failed start in one line, logs rotations and expiry warnings, and
// reports the [ExpiryMetric] gauge. It implements x509svid.Source and
// x509bundle.Source; the bundles include every federated trust domain the
// agent sends. It follows rotations pushed by the Workload API, and
// reconnects with backoff if the connection drops.
//
// A WorkloadSource is safe for concurrent use. Close it when done.
type WorkloadSource struct {
	addr    string
	source  *workloadapi.X509Source
	log     *slog.Logger
	updated chan struct{}
	reg     metric.Registration

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// NewWorkloadSource connects to the Workload API at socket (a
// unix:///path or tcp://IP:PORT address, or a bare absolute path for a
// Unix socket) and waits for the first X.509-SVID, at most until ctx ends
// or the start timeout passes (see [WithStartTimeout]). If none comes,
// the error names the address and what to check. logger may be nil.
func NewWorkloadSource(ctx context.Context, socket string, logger *slog.Logger, opts ...WorkloadOption) (_ *WorkloadSource, err error) {
	cfg := workloadConfig{startTimeout: DefaultStartTimeout}
	for _, opt := range opts {
		opt.applyToWorkload(&cfg)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr := socket
	if strings.HasPrefix(addr, "/") {
		addr = "unix://" + addr
	}
	if addr == "" {
		return nil, fmt.Errorf("certs: SPIFFE Workload API: no socket address (set %s, e.g. unix:///run/spire/sockets/agent.sock)", EndpointSocketEnv)
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return nil, fmt.Errorf("certs: SPIFFE Workload API at %s: %w", addr, err)
	}

	startCtx, cancel := context.WithTimeout(ctx, cfg.startTimeout)
	defer cancel()
	lastErr := &lastError{}
	sourceOpts := []workloadapi.X509SourceOption{
		workloadapi.WithClientOptions(
			workloadapi.WithAddr(addr),
			workloadapi.WithLogger(spiffeLogger{log: logger, last: lastErr}),
		),
	}
	if !cfg.id.IsZero() {
		sourceOpts = append(sourceOpts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == cfg.id {
					return s
				}
			}
			return nil
		}))
	}
	start := time.Now()
	source, err := workloadapi.NewX509Source(startCtx, sourceOpts...)
	if err != nil {
		reason := err.Error()
		switch {
		case ctx.Err() != nil:
			reason = fmt.Sprintf("no SVID after %s (%v)", time.Since(start).Round(time.Millisecond), context.Cause(ctx))
		case errors.Is(err, context.DeadlineExceeded):
			reason = fmt.Sprintf("no SVID after %s", cfg.startTimeout)
		}
		msg := fmt.Sprintf("certs: SPIFFE Workload API at %s: %s: is the agent running and is there a registration entry for this workload?", addr, reason)
		if last := lastErr.get(); last != "" {
			msg += " (last error: " + last + ")"
		}
		return nil, errors.New(msg)
	}
	s := &WorkloadSource{
		addr:    addr,
		source:  source,
		log:     logger,
		updated: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, source.Close())
		}
	}()
	svid, err := source.GetX509SVID()
	if err != nil || svid == nil {
		return nil, fmt.Errorf("certs: SPIFFE Workload API at %s: no SVID with ID %s among those offered", addr, cfg.id)
	}
	if err := checkValidity(addr, svid.Certificates[0], time.Now()); err != nil {
		return nil, err
	}
	if s.reg, err = registerExpiryGauge(cfg.meters, s.svid); err != nil {
		return nil, err
	}
	s.log.Info("certs: SVID from the Workload API", svidAttrs(addr, svid)...)
	go s.run(svid)
	return s, nil
}

// GetX509SVID returns the current X.509-SVID. It implements
// x509svid.Source.
func (s *WorkloadSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	svid, err := s.source.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if svid == nil {
		return nil, fmt.Errorf("certs: SPIFFE Workload API at %s: no SVID", s.addr)
	}
	return svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle of td. It
// implements x509bundle.Source.
func (s *WorkloadSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.source.GetX509BundleForTrustDomain(td)
}

// Updated returns a channel that receives a value after the Workload API
// has pushed new material. It has a buffer of one and never blocks the
// source: several updates between two reads give one value.
func (s *WorkloadSource) Updated() <-chan struct{} { return s.updated }

// Close drops the connection to the Workload API and waits for the
// source's goroutine. Afterwards the getters return [ErrClosed]. Close is
// idempotent: later calls return nil.
func (s *WorkloadSource) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		err = errors.Join(s.source.Close(), s.reg.Unregister())
	})
	return err
}

func (s *WorkloadSource) svid() *x509svid.SVID {
	if s.closed.Load() {
		return nil
	}
	svid, _ := s.source.GetX509SVID()
	return svid
}

// run relays updates and watches expiry until Close.
func (s *WorkloadSource) run(svid *x509svid.SVID) {
	defer close(s.done)
	expiry := newExpiryMonitor(s.log, s.addr)
	defer expiry.stop()
	expiry.reset(svid, time.Now())
	serial := svid.Certificates[0].SerialNumber
	for {
		select {
		case <-s.stop:
			return
		case <-s.source.Updated():
			svid, err := s.source.GetX509SVID()
			if err != nil || svid == nil {
				continue
			}
			if leaf := svid.Certificates[0]; leaf.SerialNumber.Cmp(serial) != 0 {
				serial = leaf.SerialNumber
				s.log.Info("certs: rotated SVID from the Workload API", svidAttrs(s.addr, svid)...)
				expiry.reset(svid, time.Now())
			}
			select {
			case s.updated <- struct{}{}:
			default:
			}
		case <-expiry.C():
			expiry.fire(time.Now())
		}
	}
}

func svidAttrs(addr string, svid *x509svid.SVID) []any {
	leaf := svid.Certificates[0]
	return []any{
		slog.String("source", addr),
		slog.String("spiffe_id", svid.ID.String()),
		slog.String("serial", leaf.SerialNumber.Text(16)),
		slog.String("not_after", formatTime(leaf.NotAfter)),
	}
}

// lastError keeps the last error go-spiffe's client logged, for the start
// error message.
type lastError struct {
	mu  sync.Mutex
	msg string
}

func (l *lastError) set(msg string) {
	l.mu.Lock()
	l.msg = msg
	l.mu.Unlock()
}

func (l *lastError) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

// spiffeLogger adapts slog to go-spiffe's logger: its errors (a failed
// watch, retried with backoff) become warnings, its debug and info lines
// debug lines.
type spiffeLogger struct {
	log  *slog.Logger
	last *lastError
}

func (l spiffeLogger) Debugf(format string, args ...any) {
	l.log.Debug("certs: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Infof(format string, args ...any) {
	l.log.Debug("certs: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Warnf(format string, args ...any) {
	l.log.Warn("certs: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.last.set(msg)
	l.log.Warn("certs: workload API: " + msg)
}
