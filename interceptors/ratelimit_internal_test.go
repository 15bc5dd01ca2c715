package interceptors

import (
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRateLimiterBuckets(t *testing.T) {
	t.Parallel()
	l, err := NewRateLimiter(2, 3) // 2/s, bursts of 3
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	alice := spiffeid.RequireFromString("spiffe://shop.example/user/alice")
	bob := spiffeid.RequireFromString("spiffe://shop.example/user/bob")

	for i := range 3 {
		if !l.allow(alice) {
			t.Fatalf("call %d of the burst refused", i+1)
		}
	}
	if l.allow(alice) {
		t.Fatal("fourth call in the same instant allowed; burst is 3")
	}
	if !l.allow(bob) {
		t.Fatal("bob refused because of alice's calls")
	}
	now = now.Add(500 * time.Millisecond) // refills one token at 2/s
	if !l.allow(alice) || l.allow(alice) {
		t.Fatal("after 0.5s exactly one more call should pass")
	}
	now = now.Add(time.Hour) // refills to the burst, not beyond
	for i := range 3 {
		if !l.allow(alice) {
			t.Fatalf("call %d after a long pause refused", i+1)
		}
	}
	if l.allow(alice) {
		t.Fatal("tokens grew beyond the burst")
	}
	now = now.Add(2 * idleBucket) // idle buckets are swept, a shard per sweepEvery
	for range limiterShards {
		now = now.Add(sweepEvery)
		l.allow(bob)
	}
	if l.tracked(alice) {
		t.Error("alice's idle bucket was not dropped")
	}
	if !l.tracked(bob) {
		t.Error("bob's bucket, in use, was dropped")
	}
}

// TestSweepIsOneShardAtATime: the call that sweeps drops the idle buckets
// of one shard only, so that no call is handed all the limiter's buckets
// (it once swept every shard, under each shard's lock, in one call).
func TestSweepIsOneShardAtATime(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l, err := NewRateLimiter(10, 10)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return now }
	const callers = 640
	ids := make([]spiffeid.ID, callers)
	for i := range ids {
		ids[i] = spiffeid.RequireFromString(fmt.Sprintf("spiffe://shop.example/caller/%d", i))
		l.allow(ids[i])
	}
	now = now.Add(2 * idleBucket)
	l.allow(ids[0]) // one sweep
	left := 0
	for _, id := range ids {
		if l.tracked(id) {
			left++
		}
	}
	if dropped := callers - left; dropped == 0 || dropped > callers/limiterShards*3 {
		t.Fatalf("one sweep dropped %d of %d idle buckets, want one shard's (about %d)", dropped, callers, callers/limiterShards)
	}
}

func TestNewRateLimiterErrors(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name  string
		rate  float64
		burst int
		want  string
	}{
		{"zero-rate", 0, 1, "interceptors: rate limit 0: must be positive"},
		{"negative-rate", -1, 1, "interceptors: rate limit -1: must be positive"},
		{"zero-burst", 1, 0, "interceptors: rate limit burst 0: must be at least 1"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRateLimiter(tc.rate, tc.burst); err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRateLimiterAllowAllocatesNothing: a known caller's call costs no
// allocation.
func TestRateLimiterAllowAllocatesNothing(t *testing.T) {
	l, err := NewRateLimiter(1e9, 1e9)
	if err != nil {
		t.Fatal(err)
	}
	alice := spiffeid.RequireFromString("spiffe://shop.example/user/alice")
	l.allow(alice)
	if n := testing.AllocsPerRun(1000, func() { l.allow(alice) }); n != 0 {
		t.Errorf("allow: %v allocs per call, want 0", n)
	}
}
