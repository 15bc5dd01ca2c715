package interceptors

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/rpcerr"
)

// RateLimiter limits calls per caller SPIFFE ID with a token bucket each
// (golang.org/x/time/rate): Rate calls per second on average, bursts of up
// to Burst. A caller over its limit gets ResourceExhausted
// (resource_exhausted on Connect). Build one with [NewRateLimiter]; it is
// safe for concurrent use, takes no global lock on the hot path (the
// callers are spread over shards, each read-locked), and its memory is
// bounded: buckets idle for a minute are dropped.
type RateLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time
	seed  maphash.Seed

	shards    [limiterShards]limiterShard
	lastSweep atomic.Int64  // unix nanoseconds
	nextShard atomic.Uint32 // the shard the next sweep visits
}

const limiterShards = 32

type limiterShard struct {
	mu      sync.RWMutex
	buckets map[spiffeid.ID]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last atomic.Int64 // unix nanoseconds of the last call
}

// NewRateLimiter returns a limiter of rate calls per second per caller, with
// bursts of up to burst calls. rate must be positive and burst at least 1.
func NewRateLimiter(r float64, burst int) (*RateLimiter, error) {
	if !(r > 0) {
		return nil, fmt.Errorf("interceptors: rate limit %v: must be positive", r)
	}
	if burst < 1 {
		return nil, fmt.Errorf("interceptors: rate limit burst %d: must be at least 1", burst)
	}
	l := &RateLimiter{rate: rate.Limit(r), burst: burst, now: time.Now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[spiffeid.ID]*bucket{}
	}
	return l, nil
}

const idleBucket = time.Minute

// allow takes one token from id's bucket, reporting whether there was one.
func (l *RateLimiter) allow(id spiffeid.ID) bool {
	now := l.now()
	l.maybeSweep(now)
	sh := &l.shards[maphash.String(l.seed, id.String())%limiterShards]
	sh.mu.RLock()
	b, ok := sh.buckets[id]
	sh.mu.RUnlock()
	if !ok {
		sh.mu.Lock()
		if b, ok = sh.buckets[id]; !ok {
			b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
			sh.buckets[id] = b
		}
		sh.mu.Unlock()
	}
	b.last.Store(now.UnixNano())
	return b.lim.AllowN(now, 1)
}

// sweepEvery is how often a call sweeps one shard: every shard is visited
// once per idleBucket.
const sweepEvery = idleBucket / limiterShards

// maybeSweep drops the idle buckets of one shard, once per sweepEvery, in
// the call that finds the interval over (the others carry on): the work
// one call can be handed is a shard's, not the whole limiter's, and an
// idle bucket lives about twice idleBucket while calls keep coming (a
// sweep runs only on a call: with calls seconds apart, a full pass over
// the shards takes limiterShards calls, and a server with no calls keeps
// its buckets, no more than it had, until calls resume).
func (l *RateLimiter) maybeSweep(now time.Time) {
	last := l.lastSweep.Load()
	if last == 0 { // the first call starts the interval
		l.lastSweep.CompareAndSwap(0, now.UnixNano())
		return
	}
	if now.UnixNano()-last < int64(sweepEvery) || !l.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	sh := &l.shards[(l.nextShard.Add(1)-1)%limiterShards]
	sh.mu.Lock()
	for id, b := range sh.buckets {
		if now.UnixNano()-b.last.Load() > int64(idleBucket) {
			delete(sh.buckets, id)
		}
	}
	sh.mu.Unlock()
}

// tracked reports whether id has a bucket (for tests).
func (l *RateLimiter) tracked(id spiffeid.ID) bool {
	sh := &l.shards[maphash.String(l.seed, id.String())%limiterShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, ok := sh.buckets[id]
	return ok
}

func (l *RateLimiter) message(id spiffeid.ID) string {
	return fmt.Sprintf("%s is over its rate limit of %g calls per second", id, float64(l.rate))
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
			rpcerr.Write(w, r, connect.NewError(connect.CodeUnauthenticated, errUnauthenticated))
			return
		}
		if !l.allow(caller.ID) {
			rpcerr.Write(w, r, connect.NewError(connect.CodeResourceExhausted, errors.New(l.message(caller.ID))))
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
