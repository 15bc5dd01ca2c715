package strcache_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/trustmesh/trustmesh/internal/strcache"
)

// TestGetPut: a stored string is found with its value; an absent one is
// not; more strings than slots evict some but never answer one string with
// another's value; concurrent use is safe (under -race).
func TestGetPut(t *testing.T) {
	t.Parallel()
	c := strcache.New[int]()
	if _, ok := c.Get("a"); ok {
		t.Fatal("an empty cache holds a")
	}
	c.Put("a", 1)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %d, %v", v, ok)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 4 * strcache.Slots {
				k, want := fmt.Sprint(g, "-", i), value(g, i)
				c.Put(k, want)
				if v, ok := c.Get(k); ok && v != want {
					t.Errorf("Get(%s) = %d, want %d", k, v, want)
				}
			}
		})
	}
	wg.Wait()
	// Every key has its own value, so a slot answering one string with
	// another's shows. (At most Slots strings are held: the slots are an
	// array.)
	held := 0
	for g := range 4 {
		for i := range 4 * strcache.Slots {
			k := fmt.Sprint(g, "-", i)
			if v, ok := c.Get(k); ok {
				if v != value(g, i) {
					t.Fatalf("Get(%s) answered %d, another string's value", k, v)
				}
				held++
			}
		}
	}
	if held == 0 {
		t.Fatal("the cache holds none of the last strings put")
	}
}

// value is the value TestGetPut stores for goroutine g's i-th string.
func value(g, i int) int { return g*1_000_000 + i }
