package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
)

// jwtBundles is what a WorkloadSource holds of the Workload API's JWT
// bundles: the last good set, or why there is none.
type jwtBundles struct {
	set   atomic.Pointer[identity.BundleSet] // nil until the first good response
	fatal atomic.Pointer[string]             // set when the API serves no JWT bundles at all
	ready chan struct{}                      // closed at the first good response, or at fatal
	once  sync.Once
}

func newJWTBundles() *jwtBundles { return &jwtBundles{ready: make(chan struct{})} }

func (j *jwtBundles) markReady() { j.once.Do(func() { close(j.ready) }) }

// BundleForTrustDomain returns the JWT bundle of td, as the Workload API's
// FetchJWTBundles stream last sent it. It makes the source an
// [identity.BundleSource], for [identity.VerifyJWTSVID]: the bundles hold
// the jwt-svid keys of the workload's trust domain and of every federated
// one. Before the first response, and when the Workload API serves no JWT
// bundles, it returns an error, so that JWT-SVIDs are refused rather than
// trusted.
//
// A response is adopted whole or not at all: one whose bundle for some
// trust domain does not parse (see [identity.ParseJWTBundle]) is refused,
// logged ("certs: rejected JWT bundles from the Workload API; ...") and
// counted in [RejectedMetric] as [RejectMalformed], and the last good
// bundles stay in force. A bundle left without usable keys trusts no
// JWT-SVID of its domain.
func (s *WorkloadSource) BundleForTrustDomain(td spiffeid.TrustDomain) (*identity.Bundle, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	set := s.jwt.set.Load()
	if set == nil {
		if msg := s.jwt.fatal.Load(); msg != nil {
			return nil, errors.New(*msg)
		}
		return nil, fmt.Errorf("certs: %s: no JWT bundles received yet", s.where)
	}
	b, err := set.BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: no JWT bundle for trust domain %q", s.where, td.Name())
	}
	return b, nil
}

// FetchJWTSVID asks the Workload API for a JWT-SVID for audience (one
// value, as the JWT-SVID specification recommends: the SPIFFE ID of the
// server it is for), for the SPIFFE ID of the X.509-SVID the source
// presents, and returns it verified: by [identity.VerifyJWTSVID] against
// the source's JWT bundles (see [WorkloadSource.BundleForTrustDomain]),
// with its sub the requested SPIFFE ID. A token that fails is refused with
// an error, logged and counted in [RejectedMetric] ([RejectUntrusted],
// [RejectIDMismatch]), never returned. It waits for the first JWT bundles
// until ctx ends. While the identity is withdrawn it fails with an error
// wrapping [ErrWithdrawn], without asking.
//
// Each call asks the Workload API (SPIRE's agent caches JWT-SVIDs); mesh
// clients reuse a token until it nears its expiry.
func (s *WorkloadSource) FetchJWTSVID(ctx context.Context, audience string) (*identity.JWTSVID, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if audience == "" {
		return nil, fmt.Errorf("certs: %s: fetch JWT-SVID: no audience", s.where)
	}
	st := s.state.Load()
	if st.withdrawn != nil {
		return nil, st.withdrawn
	}
	id := st.svid.ID
	select {
	case <-s.jwt.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("certs: %s: fetch JWT-SVID for %s: no JWT bundles to verify it with yet: %w", s.where, id, context.Cause(ctx))
	}
	resp, err := s.client.FetchJWTSVID(metadata.AppendToOutgoingContext(ctx, securityHeader, "true"),
		&workload.JWTSVIDRequest{Audience: []string{audience}, SpiffeId: id.String()})
	if err != nil {
		return nil, fmt.Errorf("certs: %s: fetch JWT-SVID for %s: %s", s.where, id, clip.String(status.Convert(err).Message(), maxFieldEcho))
	}
	var token string
	offered := make([]string, 0, len(resp.GetSvids()))
	for _, sv := range resp.GetSvids() {
		if sv.GetSpiffeId() == id.String() {
			token = sv.GetSvid()
			break
		}
		offered = append(offered, clip.String(sv.GetSpiffeId(), maxFieldEcho))
	}
	if token == "" {
		return nil, s.rejectJWT(RejectIDNotOffered, fmt.Errorf("certs: %s: no JWT-SVID for %s in the response (it offered %s)", s.where, id, quoteList(offered)))
	}
	svid, err := identity.VerifyJWTSVID(token, s, audience, time.Now())
	if err != nil {
		return nil, s.rejectJWT(RejectUntrusted, fmt.Errorf("certs: %s: rejected the JWT-SVID for %s: %w", s.where, id, err))
	}
	if svid.ID != id {
		return nil, s.rejectJWT(RejectIDMismatch, fmt.Errorf("certs: %s: rejected the JWT-SVID for %s: its sub is %s", s.where, id, svid.ID))
	}
	return svid, nil
}

// rejectJWT logs and counts a refused JWT-SVID, and returns err.
func (s *WorkloadSource) rejectJWT(reason string, err error) error {
	s.rejected.Add(context.Background(), 1, metric.WithAttributes(rejectedAttrs(reason)...))
	s.log.Error("certs: rejected a JWT-SVID from the Workload API", slog.String("source", s.addr), slog.String("error", err.Error()))
	return err
}

func quoteList(values []string) string {
	if len(values) == 0 {
		return "none"
	}
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(quoted, ", ")
}

// watchJWTBundles follows the FetchJWTBundles stream until ctx ends,
// reopening it as watch does the X.509 one. A Workload API that does not
// implement it (Unimplemented) is not asked again. PermissionDenied is
// only noted: the X.509 stream reports a withdrawn identity.
func (s *WorkloadSource) watchJWTBundles(ctx context.Context) {
	ctx = metadata.AppendToOutgoingContext(ctx, securityHeader, "true")
	delay := retryMin
	var lastFailure string
	for {
		received, err := s.streamJWTBundles(ctx)
		if ctx.Err() != nil {
			return
		}
		if received {
			delay = retryMin
		}
		switch status.Code(err) {
		case codes.Unimplemented:
			msg := fmt.Sprintf("certs: %s serves no JWT bundles (FetchJWTBundles: %s)", s.where, clip.String(status.Convert(err).Message(), maxFieldEcho))
			s.jwt.fatal.Store(&msg)
			s.jwt.markReady()
			s.log.Info("certs: the Workload API serves no JWT bundles; JWT-SVIDs will be refused", slog.String("source", s.addr))
			return
		case codes.PermissionDenied:
			s.log.Debug("certs: Workload API JWT bundle stream: permission denied; retrying", slog.String("source", s.addr), slog.Duration("retry_in", delay))
		default:
			level := slog.LevelWarn
			if err.Error() == lastFailure {
				level = slog.LevelDebug
			}
			lastFailure = err.Error()
			s.log.Log(context.Background(), level, "certs: Workload API JWT bundle stream failed; retrying",
				slog.String("source", s.addr), slog.String("error", clip.String(err.Error(), maxFieldEcho)), slog.Duration("retry_in", delay))
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

// streamJWTBundles reads one FetchJWTBundles stream to its end.
func (s *WorkloadSource) streamJWTBundles(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		return false, err
	}
	var lastBad *workload.JWTBundlesResponse
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		set, err := parseJWTBundles(s.where, resp)
		if err != nil {
			s.rejected.Add(context.Background(), 1, metric.WithAttributes(rejectedAttrs(RejectMalformed)...))
			if lastBad == nil || !jwtResponsesEqual(resp, lastBad) {
				s.log.Error("certs: rejected JWT bundles from the Workload API; keeping the previous ones",
					slog.String("source", s.addr), slog.String("error", err.Error()))
			}
			lastBad = resp
			continue
		}
		lastBad = nil
		prev := s.jwt.set.Swap(set)
		s.jwt.markReady()
		if prev == nil {
			s.log.Info("certs: JWT bundles from the Workload API", slog.String("source", s.addr), slog.Any("trust_domains", trustDomainNames(set)))
		}
		notify(s.updated)
	}
}

// parseJWTBundles reads every bundle of resp; one that does not parse
// fails the response.
func parseJWTBundles(where string, resp *workload.JWTBundlesResponse) (*identity.BundleSet, error) {
	names := make([]string, 0, len(resp.GetBundles()))
	for name := range resp.GetBundles() {
		names = append(names, name)
	}
	slices.Sort(names)
	bundles := make([]*identity.Bundle, 0, len(names))
	for _, name := range names {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: JWT bundle key %q is not a trust domain: %w", where, clip.String(name, maxFieldEcho), err)
		}
		b, err := identity.ParseJWTBundle(td, resp.GetBundles()[name])
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", where, err)
		}
		bundles = append(bundles, b)
	}
	return identity.NewBundleSet(bundles...), nil
}

func jwtResponsesEqual(a, b *workload.JWTBundlesResponse) bool {
	if len(a.GetBundles()) != len(b.GetBundles()) {
		return false
	}
	for k, v := range a.GetBundles() {
		if w, ok := b.GetBundles()[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

func trustDomainNames(set *identity.BundleSet) []string {
	var out []string
	for _, b := range set.Bundles() {
		out = append(out, b.TrustDomain().Name())
	}
	return out
}
