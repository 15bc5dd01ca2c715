package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/filewatch/filewatchtest"
	"github.com/trustmesh/trustmesh/policy"
)

var mallory = spiffeid.RequireFromString("spiffe://shop.example/user/mallory")

// recorder records every engine a watcher reports through WithOnUpdate.
type recorder struct {
	mu      sync.Mutex
	engines []*policy.Engine
	errs    []error
	updates chan update
}

func newRecorder() *recorder { return &recorder{updates: make(chan update, 100)} }

func (r *recorder) onUpdate(e *policy.Engine, err error) {
	r.mu.Lock()
	r.engines = append(r.engines, e)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	r.mu.Unlock()
	r.updates <- update{e, err}
}

// until waits for an engine in which ok holds.
func (r *recorder) until(t *testing.T, what string, ok func(*policy.Engine) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-r.updates:
			if u.err == nil && ok(u.engine) {
				return
			}
		case <-deadline:
			t.Fatalf("no reload %s within 10s", what)
		}
	}
}

func aliceLists(e *policy.Engine) bool { return e.Decide(gwList, alice).Outcome == policy.Allowed }

// TestWatcherHalfWrittenNeverApplied rewrites the policy file in place in
// two steps, pausing between them until the watcher has read the first
// (longer than its debounce): the truncated policy, which lacks all or part
// of the deny rule and lets mallory charge, is never the engine in force.
func TestWatcherHalfWrittenNeverApplied(t *testing.T) {
	t.Parallel()
	const before = "version: 1\nrules:\n" +
		"  - {name: no-mallory, effect: deny, from: [spiffe://shop.example/user/mallory], to: [\"*\"]}\n" +
		"  - {name: users-charge, effect: allow, from: [spiffe://shop.example/user/*], to: [" + charge + "]}\n"
	const head = "version: 1\n" +
		"# Alice may now list the products too.\n" +
		"rules:\n" +
		"  - name: users-charge\n    effect: allow\n    from: [spiffe://shop.example/user/*]\n    to: [" + charge + "]\n" +
		"  - name: alice-lists\n    effect: allow\n    from: [spiffe://shop.example/user/alice]\n    to: [" + gwList + "]\n"
	testCases := []struct {
		name        string
		first, rest string
	}{
		{"at a rule boundary", head,
			"  - name: no-mallory\n    effect: deny\n    from: [spiffe://shop.example/user/mallory]\n    to: [\"*\"]\n"},
		{"in the deny rule's methods", head +
			"  - name: no-mallory\n    effect: deny\n    from: [spiffe://shop.example/user/mallory]\n    to:\n      - " + gwList + "\n",
			"      - " + charge + "\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The cut-off file is a policy that lets mallory charge.
			if e, err := policy.Compile(mustParse(t, tc.first)); err != nil || e.Decide(charge, mallory).Outcome != policy.Allowed {
				t.Fatalf("the first half does not let mallory charge (%v): the test proves nothing", err)
			}
			rec := newRecorder()
			h := filewatchtest.NewHalfWriter(tc.first)
			w, path, _ := watch(t, before, policy.WithOnUpdate(rec.onUpdate), policy.WithReadHook(h.AfterRead))

			h.Write(t, path, tc.rest)
			rec.until(t, "with alice-lists", aliceLists)

			rec.mu.Lock()
			defer rec.mu.Unlock()
			for i, e := range append(rec.engines, w.Engine()) {
				if d := e.Decide(charge, mallory); d.Outcome != policy.Denied {
					t.Errorf("engine %d (of %d reported, then the one in force) lets mallory charge: %+v", i, len(rec.engines), d)
				}
			}
			if len(rec.errs) > 0 {
				t.Errorf("reloads read a half-written file: %v", rec.errs)
			}
		})
	}
}

func mustParse(t *testing.T, data string) policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// symlinked sets up, for TestWatcherSymlinks: dir/policy.yaml, a link to
// links/policy.yaml, a link to v1/policy.yaml; each in its own directory.
func symlinked(t *testing.T, data string) (root, path string) {
	t.Helper()
	root = t.TempDir()
	for _, d := range []string{"dir", "links", "v1", "v2"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "v1", "policy.yaml"), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "v1", "policy.yaml"), filepath.Join(root, "links", "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(root, "dir", "policy.yaml")
	if err := os.Symlink(filepath.Join("..", "links", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	return root, path
}

// TestWatcherSymlinks follows a policy file that is a chain of two
// symlinks into other directories: edits of the final target are seen,
// and so is the second link re-pointed to another directory.
func TestWatcherSymlinks(t *testing.T) {
	t.Parallel()
	root, path := symlinked(t, policyFor("alice"))
	rec := newRecorder()
	w, err := policy.NewWatcher(t.Context(), path, policy.WithDebounce(10*time.Millisecond), policy.WithOnUpdate(rec.onUpdate))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	bobLists := func(e *policy.Engine) bool { return e.Decide(gwList, bob).Outcome == policy.Allowed }

	// An edit of the target, by an atomic rename in its own directory.
	writeAtomic(t, filepath.Join(root, "v1", "policy.yaml"), policyFor("alice", "bob"))
	rec.until(t, "after the target was replaced", bobLists)
	// And in place.
	if err := os.WriteFile(filepath.Join(root, "v1", "policy.yaml"), []byte(policyFor("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	rec.until(t, "after the target was edited", func(e *policy.Engine) bool { return !aliceLists(e) && bobLists(e) })

	// The second link re-pointed into v2; then v2's file edited.
	if err := os.WriteFile(filepath.Join(root, "v2", "policy.yaml"), []byte(policyFor("alice")), 0o600); err != nil {
		t.Fatal(err)
	}
	filewatchtest.SymlinkAtomic(t, filepath.Join(root, "v2", "policy.yaml"), filepath.Join(root, "links", "policy.yaml"))
	rec.until(t, "after the link was re-pointed", func(e *policy.Engine) bool { return aliceLists(e) && !bobLists(e) })
	writeAtomic(t, filepath.Join(root, "v2", "policy.yaml"), policyFor("alice", "bob"))
	rec.until(t, "after the new target was replaced", func(e *policy.Engine) bool { return aliceLists(e) && bobLists(e) })
	if !strings.HasSuffix(w.Engine().Decide(gwList, bob).Rule, "bob-lists") {
		t.Errorf("the engine in force is not the last one: %+v", w.Engine().Decide(gwList, bob))
	}
}

// chargePolicy is policyFor(users...) plus a rule that lets orders charge.
func chargePolicy(users ...string) string {
	return policyFor(users...) + "  - name: orders-charge\n    effect: allow\n    from: [spiffe://shop.example/ns/shop/sa/orders]\n    to: [" + charge + "]\n"
}

func TestWatcherAddCheck(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		ran []string
	)
	record := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		ran = append(ran, name)
	}
	ranOnce := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := ran
		ran = nil
		return out
	}
	w, path, updates := watch(t, chargePolicy("alice"), policy.WithCheck(func(*policy.Engine) error {
		record("with")
		return nil
	}))
	if got := ranOnce(); !slices.Equal(got, []string{"with"}) {
		t.Fatalf("at the first load, the checks that ran: %v, want [with]", got)
	}
	removeCovers := w.AddCheck(func(e *policy.Engine) error {
		record("covers")
		if !e.Covers(charge) {
			return fmt.Errorf("no allow rule for %s", charge)
		}
		return nil
	})
	removeSecond := w.AddCheck(func(*policy.Engine) error {
		record("second")
		return nil
	})
	if w.AddCheck(nil) == nil {
		t.Error("AddCheck(nil) returned a nil remove function")
	}

	// A reload the added check refuses is rejected; the engine stays.
	good := w.Engine()
	writeAtomic(t, path, policyFor("alice", "bob"))
	u := next(t, updates)
	if want := path + ": no allow rule for " + charge; u.err == nil || u.err.Error() != want {
		t.Fatalf("reload error = %v, want %s", u.err, want)
	}
	if w.Engine() != good || outcome(w, bob) != policy.Denied {
		t.Error("a reload an added check refused replaced the engine in force")
	}
	if got := ranOnce(); !slices.Equal(got, []string{"with", "covers"}) {
		t.Errorf("checks that ran on the refused reload: %v, want [with covers]", got)
	}

	// One it accepts is applied, after every check ran in order.
	writeAtomic(t, path, chargePolicy("alice", "bob"))
	if u := next(t, updates); u.err != nil || outcome(w, bob) != policy.Allowed {
		t.Fatalf("reload: %v; bob %v, want allow", u.err, outcome(w, bob))
	}
	if got := ranOnce(); !slices.Equal(got, []string{"with", "covers", "second"}) {
		t.Errorf("checks that ran on the reload: %v, want [with covers second]", got)
	}

	// Once removed, the check no longer runs.
	removeCovers()
	removeCovers()
	writeAtomic(t, path, policyFor("bob"))
	if u := next(t, updates); u.err != nil || outcome(w, alice) != policy.Denied {
		t.Fatalf("reload after removing the check: %v; alice %v, want deny", u.err, outcome(w, alice))
	}
	if got := ranOnce(); !slices.Equal(got, []string{"with", "second"}) {
		t.Errorf("checks that ran after one was removed: %v, want [with second]", got)
	}
	removeSecond()
}

// TestWatcherAddCheckConcurrent adds and removes checks from several
// goroutines while the policy reloads; run it with -race. A check that
// refuses everything is in place only between its AddCheck and remove.
func TestWatcherAddCheckConcurrent(t *testing.T) {
	t.Parallel()
	w, path, updates := watch(t, policyFor("alice"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				remove := w.AddCheck(func(*policy.Engine) error { return nil })
				remove()
			}
		})
	}
	for i := range 5 {
		writeAtomic(t, path, policyFor("alice", fmt.Sprintf("user%d", i)))
		if u := next(t, updates); u.err != nil {
			t.Fatalf("reload %d: %v", i, u.err)
		}
	}
	close(stop)
	wg.Wait()

	remove := w.AddCheck(func(*policy.Engine) error { return fmt.Errorf("refused") })
	writeAtomic(t, path, policyFor("bob"))
	if u := next(t, updates); u.err == nil || u.err.Error() != path+": refused" {
		t.Fatalf("reload with a refusing check: %v, want %s: refused", u.err, path)
	}
	remove()
	writeAtomic(t, path, policyFor("alice", "bob", "carol"))
	if u := next(t, updates); u.err != nil {
		t.Fatalf("reload once the refusing check was removed: %v", u.err)
	}
}
