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
				k := fmt.Sprint(g, "-", i)
				c.Put(k, i)
				if v, ok := c.Get(k); ok && v != i {
					t.Errorf("Get(%s) = %d, want %d", k, v, i)
				}
			}
		})
	}
	wg.Wait()
	held := 0
	for g := range 4 {
		for i := range 4 * strcache.Slots {
			if v, ok := c.Get(fmt.Sprint(g, "-", i)); ok {
				if v != i {
					t.Fatalf("a string answered with another's value %d", v)
				}
				held++
			}
		}
	}
	if held > strcache.Slots {
		t.Fatalf("%d strings held, more than %d slots", held, strcache.Slots)
	}
}
