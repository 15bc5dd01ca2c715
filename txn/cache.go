package txn

import (
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// DefaultCacheSize is how many verified tokens a [Verifier] remembers
// unless [WithCacheSize] says otherwise.
const DefaultCacheSize = 10_000

// sweep is how many expired entries at most an addition drops from the
// old end of the cache's queue.
const sweep = 4

// cache remembers verified tokens by their compact form, each until it
// expires, so that a token presented again costs a map look-up (the
// entry's token holds the string already) instead of a chain verification
// and a signature check. It holds at most max entries, in a queue in the order they were
// added (a ring that grows as entries come, so that an idle verifier costs
// no memory for its bound): adding to a full cache evicts the oldest entry (tokens have
// about the same lifetime, so the oldest is the first to expire), and
// every addition also drops the expired entries at the old end of the
// queue, a few at a time; a lookup that finds an expired entry drops it.
type cache struct {
	mu      sync.RWMutex
	entries map[string]*entry
	queue   []*entry // a ring: the oldest at head, n of them
	head, n int
	max     int // the most entries the cache holds; len(queue) grows to it
}

// entry is one verified token and what must still hold to reuse it.
type entry struct {
	tok *Token
	// until is when the entry stops being usable: the token's exp plus the
	// leeway, or the expiry of the certificate chain that signed it if
	// that is sooner.
	until time.Time
	// bundle is the trust bundle the chain was verified against: when the
	// source hands out another one (a bundle update), the token is
	// verified again.
	bundle *x509bundle.Bundle
}

func newCache(size int) *cache {
	return &cache{entries: make(map[string]*entry), max: size}
}

// grow makes room for one more entry in a full queue that is below max,
// keeping the entries in order from the old end.
func (c *cache) grow() {
	size := min(max(2*len(c.queue), 16), c.max)
	q := make([]*entry, size)
	for i := range c.n {
		q[i] = c.queue[(c.head+i)%len(c.queue)]
	}
	c.queue, c.head = q, 0
}

// get returns the entry of the token raw, or nil.
func (c *cache) get(raw string) *entry {
	c.mu.RLock()
	e := c.entries[raw]
	c.mu.RUnlock()
	return e
}

// put adds e, unless an entry for the same token is already there, and
// drops up to sweep expired (or removed) entries from the old end.
func (c *cache) put(e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[e.tok.raw]; ok {
		return
	}
	for i := 0; c.n > 0 && i < sweep; i++ {
		if old := c.queue[c.head]; c.entries[old.tok.raw] == old && !now.After(old.until) {
			break
		}
		c.pop()
	}
	if c.n == len(c.queue) {
		if len(c.queue) < c.max {
			c.grow()
		} else {
			c.pop()
		}
	}
	c.queue[(c.head+c.n)%len(c.queue)] = e
	c.n++
	c.entries[e.tok.raw] = e
}

// pop drops the oldest entry of the queue, and removes it from the map
// unless it was removed already (a newer entry for the same token may have
// taken its place there).
func (c *cache) pop() {
	old := c.queue[c.head]
	if c.entries[old.tok.raw] == old {
		delete(c.entries, old.tok.raw)
	}
	c.queue[c.head] = nil
	c.head = (c.head + 1) % len(c.queue)
	c.n--
}

// remove drops e from the map, if it is still there; its place in the
// queue is freed when it reaches the old end.
func (c *cache) remove(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.tok.raw] == e {
		delete(c.entries, e.tok.raw)
	}
}

// len returns the number of entries.
func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
