package interceptors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
)

// RateLimiter limits calls per caller SPIFFE ID with a token bucket each:
// Rate calls per second on average, bursts of up to Burst. A caller over its
// limit gets ResourceExhausted (resource_exhausted on Connect). Build one
// with [NewRateLimiter]; it is safe for concurrent use and its memory is
// bounded: buckets idle for a minute are dropped.
type RateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[spiffeid.ID]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter of rate calls per second per caller, with
// bursts of up to burst calls. rate must be positive and burst at least 1.
func NewRateLimiter(rate float64, burst int) (*RateLimiter, error) {
	if !(rate > 0) {
		return nil, fmt.Errorf("interceptors: rate limit %v: must be positive", rate)
	}
	if burst < 1 {
		return nil, fmt.Errorf("interceptors: rate limit burst %d: must be at least 1", burst)
	}
	return &RateLimiter{rate: rate, burst: float64(burst), now: time.Now, buckets: map[spiffeid.ID]*bucket{}}, nil
}

const idleBucket = time.Minute

// allow takes one token from id's bucket, reporting whether there was one.
func (l *RateLimiter) allow(id spiffeid.ID) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > idleBucket {
		for k, b := range l.buckets {
			if now.Sub(b.last) > idleBucket {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[id]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *RateLimiter) message(id spiffeid.ID) string {
	return fmt.Sprintf("%s is over its rate limit of %g calls per second", id, l.rate)
}

// TapHandle returns a grpc-go InTapHandle that refuses calls over the
// caller's limit before the stream exists.
func (l *RateLimiter) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		caller, err := principalFromGRPC(ctx)
		if err != nil {
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
		if !l.allow(caller.ID) {
			return ctx, status.Error(codes.ResourceExhausted, l.message(caller.ID))
		}
		return ctx, nil
	}
}

// HTTPHandler returns net/http middleware that refuses requests over the
// caller's limit (ResourceExhausted, in the protocol the client speaks)
// before next sees them, whatever their path: every procedure a connect-go
// server answers, known or not, is limited. The caller is the verified peer
// the mesh's HTTP layer put in the request context; a request without one
// is refused with Unauthenticated.
func (l *RateLimiter) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := identity.FromContext(r.Context())
		if !ok {
			writeConnectError(w, r, connect.NewError(connect.CodeUnauthenticated, errUnauthenticated))
			return
		}
		if !l.allow(caller.ID) {
			writeConnectError(w, r, connect.NewError(connect.CodeResourceExhausted, errors.New(l.message(caller.ID))))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ChainTapHandles runs InTapHandles in order, stopping at the first error;
// grpc-go takes only one.
func ChainTapHandles(handles ...tap.ServerInHandle) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		var err error
		for _, h := range handles {
			if ctx, err = h(ctx, info); err != nil {
				return ctx, err
			}
		}
		return ctx, nil
	}
}
