package txn

import (
	"crypto/sha256"
	"testing"
	"time"
)

func testEntry(name string, until time.Time) *entry {
	return &entry{tok: &Token{raw: name, digest: sha256.Sum256([]byte(name))}, until: until}
}

// TestCacheBounded: the cache never holds more than its size; a full
// cache evicts the oldest entry, and drops expired ones it meets.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	later := now.Add(time.Minute)
	c := newCache(3)
	a, b, d, e := testEntry("a", later), testEntry("b", later), testEntry("d", later), testEntry("e", later)
	for _, x := range []*entry{a, b, d} {
		c.put(x, now)
	}
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3", c.len())
	}
	c.put(e, now) // evicts a, the oldest
	if c.len() != 3 || c.get(a.tok.raw) != nil || c.get(e.tok.raw) != e {
		t.Errorf("after a fourth put: len %d, a %v, e %v", c.len(), c.get(a.tok.raw), c.get(e.tok.raw))
	}
	// Putting a token already there keeps the first entry.
	c.put(testEntry("e", later), now)
	if c.get(e.tok.raw) != e || c.len() != 3 {
		t.Error("a second put of the same token replaced the first")
	}
	// Removing, then putting again: the old slot no longer speaks for it.
	c.remove(b)
	b2 := testEntry("b", later)
	c.put(b2, now) // evicts b's old slot, which must not drop b2
	if c.get(b2.tok.raw) != b2 {
		t.Error("evicting a removed entry's slot dropped its successor")
	}
	if c.len() > 3 {
		t.Errorf("len = %d, more than the size", c.len())
	}
}

func TestCacheSweepsExpired(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newCache(8)
	for i := range 5 {
		c.put(testEntry(string(rune('a'+i)), now.Add(time.Second)), now)
	}
	// Two seconds later the five have expired; each put drops up to sweep
	// of them from the old end, and stops at the first live one.
	fresh := testEntry("fresh", now.Add(time.Hour))
	c.put(fresh, now.Add(2*time.Second))
	if got := c.len(); got != 1+5-sweep {
		t.Errorf("len = %d after sweeping, want %d", got, 1+5-sweep)
	}
	c.put(testEntry("fresh2", now.Add(time.Hour)), now.Add(2*time.Second))
	if got := c.len(); got != 2 {
		t.Errorf("len = %d after sweeping again, want 2 (the fresh ones)", got)
	}
	c.put(testEntry("fresh3", now.Add(time.Hour)), now.Add(2*time.Second))
	if got := c.len(); got != 3 || c.get(fresh.tok.raw) != fresh {
		t.Errorf("len = %d, fresh %v: a sweep dropped a live entry", got, c.get(fresh.tok.raw))
	}
}

// TestCacheGrowsInOrder: an empty cache holds no queue for its bound; the
// queue grows as entries come (also when its ring has wrapped), keeps them
// oldest first, and stops at the bound, from where the oldest is evicted.
func TestCacheGrowsInOrder(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newCache(40)
	if len(c.queue) != 0 {
		t.Fatalf("an empty cache has a queue of %d", len(c.queue))
	}
	// Fill the first ring, let the first four expire and be swept, so the
	// ring's head is past its start when it next grows.
	var all []*entry
	for i := range 16 {
		until := now.Add(time.Hour)
		if i < 4 {
			until = now.Add(time.Second)
		}
		e := testEntry(string(rune('A'+i)), until)
		c.put(e, now)
		all = append(all, e)
	}
	later := now.Add(2 * time.Second)
	for i := range 40 {
		e := testEntry(string(rune('a'+i)), now.Add(time.Hour))
		c.put(e, later)
		all = append(all, e)
	}
	if len(c.queue) != 40 || c.len() != 40 {
		t.Fatalf("queue %d, len %d: want both at the bound 40", len(c.queue), c.len())
	}
	// 56 added, 4 expired and swept, 12 evicted: the newest 40 remain, in order.
	want := all[16:]
	for i, e := range want {
		if got := c.queue[(c.head+i)%len(c.queue)]; got != e {
			t.Fatalf("queue[%d] = %q, want %q", i, got.tok.raw, e.tok.raw)
		}
	}
	for _, e := range all[:16] {
		if c.get(e.tok.raw) != nil {
			t.Errorf("%q is still cached after 40 newer entries", e.tok.raw)
		}
	}
}
