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
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/trustmesh/trustmesh/internal/clip"
)

// EndpointSocketEnv is the environment variable through which SPIFFE
// tells a workload where the Workload API is, e.g.
// unix:///run/spire/sockets/agent.sock.
const EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// DefaultStartTimeout is how long [NewWorkloadSource] waits for the first
// SVID unless [WithStartTimeout] says otherwise.
const DefaultStartTimeout = 30 * time.Second

// ErrWithdrawn is returned (wrapped) by [WorkloadSource.GetX509SVID] while
// the Workload API withholds the workload's identity: it answered
// PermissionDenied, as a SPIRE agent does once no registration entry
// matches the workload any more.
var ErrWithdrawn = errors.New("certs: identity withdrawn by the Workload API")

// Delays between attempts to (re)open the Workload API stream: the first
// retry waits retryMin, each further one twice as long, up to retryMax;
// a response received starts over.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// securityHeader is the metadata every Workload API call must carry; the
// server refuses calls without it (with InvalidArgument).
const securityHeader = "workload.spiffe.io"

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
// [ExpiryMetric] gauge and the [RejectedMetric] counter. By default, it is
// otel.GetMeterProvider(). A nil provider leaves the default.
func WithMeterProvider(mp metric.MeterProvider) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) {
		if mp != nil {
			c.meters = mp
		}
	})
}

// WithSVIDID picks, among the SVIDs the Workload API offers, the one whose
// spiffe_id is id; the start fails if there is none, and a later response
// without it is rejected. By default, the source uses the first SVID,
// which is the Workload API's default. A zero ID leaves the default.
func WithSVIDID(id spiffeid.ID) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.id = id })
}

// WorkloadSource is an X.509-SVID and trust bundle source fed by the SPIFFE
// Workload API (a SPIRE agent in production). It implements
// x509svid.Source and x509bundle.Source; the bundles include every
// federated trust domain the agent sends. It follows the responses the
// Workload API streams, and reopens the stream if it ends (after 100ms,
// doubling up to 5s while it keeps failing).
//
// It adopts a response only if it is sound, with the checks [FileSource]
// applies to files: the SVID (see [WithSVIDID]) has every mandatory field
// set, its key matches its certificate, its spiffe_id is its certificate's
// URI SAN, it is valid now, and its chain verifies under the X.509-SVID
// rules of [identity.Verify], for both the server and the client role,
// against the bundle of the same response; no bundle in the response is
// empty. Otherwise it keeps the last good SVID and bundles, logs one error
// line ("certs: rejected an update from the Workload API; ...") and counts
// the response in [RejectedMetric].
//
// When the Workload API answers PermissionDenied (the agent withdrew the
// workload's identity), the source stops presenting its SVID:
// [WorkloadSource.GetX509SVID] returns an error wrapping [ErrWithdrawn], so
// new handshakes that need it fail, [WorkloadSource.Serving] reports false
// and the [ExpiryMetric] gauge has no point. It keeps retrying, and
// presents an SVID again once the agent issues a sound one. The bundles
// stay those of the last good response. Established connections are not
// closed by the source.
//
// It also serves JWT-SVIDs ([WorkloadSource.FetchJWTSVID]) and the JWT
// bundles of the FetchJWTBundles stream ([WorkloadSource.BundleForTrustDomain],
// an identity.BundleSource), checked as strictly.
//
// A WorkloadSource is safe for concurrent use. Close it when done.
type WorkloadSource struct {
	addr     string // as given, with unix:// added to a bare path
	where    string // "SPIFFE Workload API at ADDR", for errors
	id       spiffeid.ID
	conn     *grpc.ClientConn
	client   workload.SpiffeWorkloadAPIClient
	log      *slog.Logger
	rejected metric.Int64Counter
	reg      metric.Registration

	state          atomic.Pointer[workloadState]
	jwt            *jwtBundles // the JWT bundles and JWT-SVIDs: jwt_workload.go
	updated        chan struct{}
	servingChanged chan struct{}

	// started receives the outcome of the first response: nil if it was
	// adopted, the rejection otherwise.
	started   chan error
	startOnce sync.Once
	lastErr   lastError // why the stream last failed, for the start error

	closed    atomic.Bool
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// workloadState is what the source serves: the last good material, and
// whether the Workload API has withdrawn the identity since.
type workloadState struct {
	*workloadMaterial
	withdrawn error // non-nil (wrapping ErrWithdrawn) while withdrawn
}

// NewWorkloadSource connects to the Workload API at socket (a
// unix:///path or tcp://IP:PORT address, or a bare absolute path for a
// Unix socket) and waits for the first X.509-SVID, at most until ctx ends
// or the start timeout passes (see [WithStartTimeout]). If none comes, the
// error names the address and what to check; if the first response is not
// sound (see [WorkloadSource]), the error says what is wrong with it.
// logger may be nil.
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
	target, err := workloadapi.TargetFromAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("certs: SPIFFE Workload API at %s: %w", addr, err)
	}
	if !strings.HasPrefix(target, "unix:") {
		target = "passthrough:///" + target // tcp://IP:PORT: an IP, nothing to resolve
	}
	rejected, err := newRejectedCounter(cfg.meters)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // a local socket, as SPIFFE specifies
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: retryMin, Multiplier: 2, Jitter: 0.2, MaxDelay: retryMax,
		}}))
	if err != nil {
		return nil, fmt.Errorf("certs: SPIFFE Workload API at %s: %w", addr, err)
	}
	s := &WorkloadSource{
		addr:           addr,
		where:          "SPIFFE Workload API at " + addr,
		id:             cfg.id,
		conn:           conn,
		client:         workload.NewSpiffeWorkloadAPIClient(conn),
		log:            logger,
		rejected:       rejected,
		jwt:            newJWTBundles(),
		updated:        make(chan struct{}, 1),
		servingChanged: make(chan struct{}, 1),
		started:        make(chan error, 1),
		done:           make(chan struct{}),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.shutdown())
		}
	}()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.run(runCtx)

	start := time.Now()
	startCtx, stop := context.WithTimeout(ctx, cfg.startTimeout)
	defer stop()
	select {
	case err := <-s.started:
		if err != nil {
			return nil, err
		}
	case <-startCtx.Done():
		reason := fmt.Sprintf("no SVID after %s", cfg.startTimeout)
		if ctx.Err() != nil {
			reason = fmt.Sprintf("no SVID after %s (%v)", time.Since(start).Round(time.Millisecond), context.Cause(ctx))
		}
		msg := fmt.Sprintf("certs: %s: %s: is the agent running and is there a registration entry for this workload?", s.where, reason)
		if last := s.lastErr.get(); last != "" {
			msg += " (last error: " + last + ")"
		}
		return nil, errors.New(msg)
	}
	if s.reg, err = registerExpiryGauge(cfg.meters, s.svid); err != nil {
		return nil, err
	}
	return s, nil
}

// GetX509SVID returns the current X.509-SVID. It implements
// x509svid.Source. While the Workload API withholds the identity (see
// [ErrWithdrawn]) it returns an error instead, so that no new handshake
// presents an SVID the agent no longer vouches for.
func (s *WorkloadSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	st := s.state.Load()
	if st.withdrawn != nil {
		return nil, st.withdrawn
	}
	return st.svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle of td. It
// implements x509bundle.Source.
func (s *WorkloadSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.state.Load().bundles.GetX509BundleForTrustDomain(td)
}

// Serving reports whether the source presents an SVID: true from the start
// until the Workload API withdraws the identity, false until it issues one
// again, and false after Close. It is meant for health checks (a server
// whose SVID is withdrawn should report NOT_SERVING); watch
// [WorkloadSource.ServingChanged] to follow it.
func (s *WorkloadSource) Serving() bool {
	return !s.closed.Load() && s.state.Load().withdrawn == nil
}

// ServingChanged returns a channel that receives a value after
// [WorkloadSource.Serving] has changed. It has a buffer of one and never
// blocks the source: read Serving after each value, and several changes
// between two reads give one value and the latest state.
//
//	for {
//		select {
//		case <-src.ServingChanged():
//			setHealth(src.Serving())
//		case <-ctx.Done():
//			return
//		}
//	}
func (s *WorkloadSource) ServingChanged() <-chan struct{} { return s.servingChanged }

// Updated returns a channel that receives a value after the source has
// adopted new material from the Workload API (an X.509-SVID, bundles, JWT
// bundles) or stopped presenting its SVID. It has a buffer of one and never blocks the source: several
// updates between two reads give one value.
func (s *WorkloadSource) Updated() <-chan struct{} { return s.updated }

// Close drops the connection to the Workload API and waits for the
// source's goroutine. Afterwards the getters return [ErrClosed]. Close is
// idempotent: later calls return nil.
func (s *WorkloadSource) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		notify(s.servingChanged)
		err = s.shutdown()
	})
	return err
}

// shutdown stops the goroutine and releases what the source holds.
func (s *WorkloadSource) shutdown() error {
	s.cancel()
	<-s.done
	err := s.conn.Close()
	if s.reg != nil {
		err = errors.Join(err, s.reg.Unregister())
	}
	return err
}

// svid returns the SVID for the expiry gauge: nil after Close and while
// the identity is withdrawn.
func (s *WorkloadSource) svid() *x509svid.SVID {
	if s.closed.Load() {
		return nil
	}
	st := s.state.Load()
	if st == nil || st.withdrawn != nil {
		return nil
	}
	return st.svid
}

// watchEvent is what the stream reader hands to the source's goroutine:
// a response, or the error that ended a stream and the wait before the
// next one.
type watchEvent struct {
	resp    *workload.X509SVIDResponse
	err     error
	retryIn time.Duration
}

// run applies what the Workload API streams and watches expiry until ctx
// ends.
func (s *WorkloadSource) run(ctx context.Context) {
	defer close(s.done)
	events := make(chan watchEvent)
	var wg sync.WaitGroup
	wg.Go(func() { s.watch(ctx, events) })
	wg.Go(func() { s.watchJWTBundles(ctx) }) // JWT bundles: jwt_workload.go
	defer wg.Wait()

	expiry := newExpiryMonitor(s.log, s.addr)
	defer expiry.stop()
	var lastBad *workload.X509SVIDResponse // the last rejected response, logged once
	var lastFailure string                 // the last stream error, warned about once in a row
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.resp != nil {
				lastFailure = ""
				if s.apply(ev.resp, lastBad, expiry) {
					lastBad = nil
				} else {
					lastBad = ev.resp
				}
				continue
			}
			if status.Code(ev.err) == codes.PermissionDenied {
				lastBad = nil
				if s.withdraw(ev.err) {
					expiry.stop()
				}
				continue
			}
			s.lastErr.set(ev.err.Error())
			level := slog.LevelWarn
			if ev.err.Error() == lastFailure {
				level = slog.LevelDebug // said already
			}
			lastFailure = ev.err.Error()
			s.log.Log(context.Background(), level, "certs: Workload API stream failed; retrying",
				slog.String("source", s.addr),
				slog.String("error", clip.String(ev.err.Error(), maxFieldEcho)),
				slog.Duration("retry_in", ev.retryIn))
		case <-expiry.C():
			expiry.fire(time.Now())
		}
	}
}

// apply adopts resp if it is sound and reports whether it did; otherwise
// it counts the rejection, and logs it unless resp is lastBad again.
func (s *WorkloadSource) apply(resp, lastBad *workload.X509SVIDResponse, expiry *expiryMonitor) bool {
	now := time.Now()
	m, err := checkWorkloadResponse(s.where, s.id, resp, now)
	prev := s.state.Load()
	if err != nil {
		s.rejected.Add(context.Background(), 1, metric.WithAttributes(rejectedAttrs(reasonOf(err))...))
		if prev == nil {
			s.startOnce.Do(func() { s.started <- err })
			return false
		}
		if lastBad != nil && proto.Equal(resp, lastBad) {
			return false
		}
		if prev.withdrawn != nil {
			s.log.Error("certs: rejected an update from the Workload API; the SVID stays withdrawn",
				slog.String("source", s.addr), slog.String("error", err.Error()))
		} else {
			s.log.Error("certs: rejected an update from the Workload API; still serving the previous SVID",
				slog.String("source", s.addr), slog.String("error", err.Error()),
				slog.String("serving_serial", prev.svid.Certificates[0].SerialNumber.Text(16)))
		}
		return false
	}
	s.state.Store(&workloadState{workloadMaterial: m})
	switch {
	case prev == nil:
		s.log.Info("certs: SVID from the Workload API", svidAttrs(s.addr, m.svid)...)
		s.startOnce.Do(func() { s.started <- nil })
		expiry.reset(m.svid, now)
	case prev.withdrawn != nil:
		s.log.Info("certs: the Workload API issued an SVID again; presenting it", svidAttrs(s.addr, m.svid)...)
		expiry.reset(m.svid, now)
		notify(s.servingChanged)
	case prev.svid.Certificates[0].SerialNumber.Cmp(m.svid.Certificates[0].SerialNumber) != 0:
		s.log.Info("certs: rotated SVID from the Workload API", svidAttrs(s.addr, m.svid)...)
		expiry.reset(m.svid, now)
	}
	notify(s.updated)
	return true
}

// withdraw stops presenting the SVID after the Workload API answered
// PermissionDenied with err, and reports whether it was presented until
// then. Before the first SVID it only notes err for the start error.
func (s *WorkloadSource) withdraw(err error) bool {
	prev := s.state.Load()
	if prev == nil {
		s.lastErr.set(err.Error())
		return false
	}
	if prev.withdrawn != nil {
		s.log.Debug("certs: the Workload API still withholds the SVID", slog.String("source", s.addr))
		return false
	}
	withdrawn := fmt.Errorf("%w: %s answered PermissionDenied (%s); no SVID is presented until it issues one again",
		ErrWithdrawn, s.addr, clip.String(status.Convert(err).Message(), maxFieldEcho))
	s.state.Store(&workloadState{workloadMaterial: prev.workloadMaterial, withdrawn: withdrawn})
	s.log.Error("certs: the Workload API withdrew the SVID; no longer presenting it",
		append(svidAttrs(s.addr, prev.svid), slog.String("error", clip.String(err.Error(), maxFieldEcho)))...)
	notify(s.servingChanged)
	notify(s.updated)
	return true
}

// watch opens FetchX509SVID streams one after the other and hands what
// they bring to events, until ctx ends.
func (s *WorkloadSource) watch(ctx context.Context, events chan<- watchEvent) {
	ctx = metadata.AppendToOutgoingContext(ctx, securityHeader, "true")
	delay := retryMin
	send := func(ev watchEvent) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		received, err := s.stream(ctx, send)
		if ctx.Err() != nil {
			return
		}
		if received {
			delay = retryMin
		}
		if !send(watchEvent{err: err, retryIn: delay}) {
			return
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// stream reads one FetchX509SVID stream to its end and returns the error
// that ended it, and whether it brought any response.
func (s *WorkloadSource) stream(ctx context.Context, send func(watchEvent) bool) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		if !send(watchEvent{resp: resp}) {
			return received, ctx.Err()
		}
	}
}

// notify sends on a channel with a buffer of one without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
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

// lastError keeps the last error of the Workload API stream, for the start
// error message.
type lastError struct {
	mu  sync.Mutex
	msg string
}

func (l *lastError) set(msg string) {
	l.mu.Lock()
	l.msg = clip.String(msg, maxFieldEcho)
	l.mu.Unlock()
}

func (l *lastError) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}
