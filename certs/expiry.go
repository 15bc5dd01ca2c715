package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ExpiryMetric is the name of the observable gauge that [FileSource] and
// [WorkloadSource] report: the seconds until the current SVID's leaf
// expires (negative once it has), with the attribute spiffe.id naming the
// SVID's SPIFFE ID (one per workload, so of low cardinality).
const ExpiryMetric = "trustmesh.svid.expiry"

// ErrClosed is returned by the getters of a source after Close.
var ErrClosed = errors.New("certs: source is closed")

// meterName is the instrumentation scope of the certs package's metrics.
const meterName = "github.com/trustmesh/trustmesh/certs"

// registerExpiryGauge registers the [ExpiryMetric] gauge with mp (the global
// provider if nil), read from current on every collection. current returns
// nil when there is nothing to report.
func registerExpiryGauge(mp metric.MeterProvider, current func() *x509svid.SVID) (metric.Registration, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(meterName)
	gauge, err := meter.Float64ObservableGauge(ExpiryMetric,
		metric.WithUnit("s"),
		metric.WithDescription("Seconds until the workload's current X.509-SVID expires; negative once it has."))
	if err != nil {
		return nil, fmt.Errorf("certs: %s gauge: %w", ExpiryMetric, err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		svid := current()
		if svid == nil || len(svid.Certificates) == 0 {
			return nil
		}
		o.ObserveFloat64(gauge, time.Until(svid.Certificates[0].NotAfter).Seconds(),
			metric.WithAttributes(attribute.String("spiffe.id", svid.ID.String())))
		return nil
	}, gauge)
	if err != nil {
		return nil, fmt.Errorf("certs: %s gauge: %w", ExpiryMetric, err)
	}
	return reg, nil
}

// checkValidity reports a leaf that is not valid at now, naming file (the
// certificate file, or the Workload API address) and the dates.
func checkValidity(file string, leaf *x509.Certificate, now time.Time) error {
	dates := fmt.Sprintf("(valid from %s to %s)", formatTime(leaf.NotBefore), formatTime(leaf.NotAfter))
	switch {
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certs: %s: SVID is not valid until %s %s", file, formatTime(leaf.NotBefore), dates)
	case now.After(leaf.NotAfter):
		return fmt.Errorf("certs: %s: SVID expired at %s %s", file, formatTime(leaf.NotAfter), dates)
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// expiryMonitor logs, for the current SVID of a source, a warning once less
// than a fifth of its lifetime is left and an error once it has expired:
// at each new SVID ([expiryMonitor.reset]) and when its timer fires
// ([expiryMonitor.fire]). It belongs to one goroutine.
type expiryMonitor struct {
	log   *slog.Logger
	what  string // the source, for the log lines
	timer *time.Timer
	leaf  *x509.Certificate
	id    string
	stage int // 0: fresh, 1: warned, 2: expiry logged
}

func newExpiryMonitor(log *slog.Logger, what string) *expiryMonitor {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &expiryMonitor{log: log, what: what, timer: t}
}

// C fires when the monitor has something to check.
func (m *expiryMonitor) C() <-chan time.Time { return m.timer.C }

func (m *expiryMonitor) stop() { m.timer.Stop() }

// reset starts monitoring svid.
func (m *expiryMonitor) reset(svid *x509svid.SVID, now time.Time) {
	m.leaf, m.id, m.stage = svid.Certificates[0], svid.ID.String(), 0
	m.fire(now)
}

// fire logs what is due at now and arms the timer for the next stage.
func (m *expiryMonitor) fire(now time.Time) {
	if m.leaf == nil {
		return
	}
	notAfter := m.leaf.NotAfter
	warnAt := notAfter.Add(-m.leaf.NotAfter.Sub(m.leaf.NotBefore) / 5)
	attrs := []any{
		slog.String("source", m.what),
		slog.String("spiffe_id", m.id),
		slog.String("not_after", formatTime(notAfter)),
	}
	if m.stage < 2 && !now.Before(notAfter) {
		m.stage = 2
		m.log.Error("certs: SVID has expired and no valid replacement was loaded; peers will refuse it", attrs...)
		return
	}
	if m.stage < 1 && !now.Before(warnAt) {
		m.stage = 1
		m.log.Warn("certs: SVID expires soon: less than a fifth of its lifetime is left",
			append(attrs, slog.Duration("remaining", notAfter.Sub(now).Round(time.Second)))...)
	}
	next := notAfter
	if m.stage == 0 {
		next = warnAt
	}
	m.timer.Reset(next.Sub(now))
}
