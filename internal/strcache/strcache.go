// Package strcache is a bounded cache of values computed from strings (a
// header, a baggage member), for values that are costly to compute, the
// same for the same string and shared by every caller: lock-free to read,
// direct-mapped by the string's hash into a fixed number of slots, so that
// memory stays bounded whatever strings callers send. A string it does not
// hold is computed by the caller and replaces the one in its slot.
package strcache

import (
	"hash/maphash"
	"sync/atomic"
)

// Slots is how many strings a Cache holds at most.
const Slots = 256

// Cache maps strings to values of type V. Its zero value is not usable:
// build it with [New]. Values are shared: never modify one after [Cache.Put].
type Cache[V any] struct {
	seed  maphash.Seed
	slots [Slots]atomic.Pointer[entry[V]]
}

type entry[V any] struct {
	key string
	val V
}

// New returns an empty cache.
func New[V any]() *Cache[V] { return &Cache[V]{seed: maphash.MakeSeed()} }

func (c *Cache[V]) slot(key string) *atomic.Pointer[entry[V]] {
	return &c.slots[maphash.String(c.seed, key)%Slots]
}

// Get returns the value of key, if the cache holds it.
func (c *Cache[V]) Get(key string) (V, bool) {
	if e := c.slot(key).Load(); e != nil && e.key == key {
		return e.val, true
	}
	var zero V
	return zero, false
}

// Put stores v as the value of key, in place of whatever its slot held.
// key must not share memory a caller reuses (clone one that may).
func (c *Cache[V]) Put(key string, v V) { c.slot(key).Store(&entry[V]{key: key, val: v}) }
