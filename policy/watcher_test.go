package policy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/trustmesh/trustmesh/policy"
)

var (
	alice = spiffeid.RequireFromString("spiffe://shop.example/user/alice")
	bob   = spiffeid.RequireFromString("spiffe://shop.example/user/bob")
)

// policyFor returns a policy file that lets user lists ListProducts.
func policyFor(users ...string) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - name: %s-lists\n    effect: allow\n    from: [spiffe://shop.example/user/%s]\n    to: [%s]\n", u, u, gwList)
	}
	return b.String()
}

const badPolicy = "version: 1\nrules:\n  - name: broken\n    effect: allow\n    from: [spiffe://shop.example/user/bob*]\n    to: [\"*\"]\n"

// writeAtomic replaces path by renaming a new file over it, as editors and
// config management tools do.
func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

type update struct {
	engine *policy.Engine
	err    error
}

// watch starts a watcher on a new file holding data, with a short debounce
// and an OnUpdate callback feeding the returned channel.
func watch(t *testing.T, data string, opts ...policy.WatcherOption) (w *policy.Watcher, path string, updates <-chan update) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := make(chan update, 100)
	opts = append([]policy.WatcherOption{
		policy.WithDebounce(10 * time.Millisecond),
		policy.WithOnUpdate(func(e *policy.Engine, err error) { ch <- update{e, err} }),
	}, opts...)
	w, err := policy.NewWatcher(t.Context(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w, path, ch
}

// next waits for the next update.
func next(t *testing.T, updates <-chan update) update {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return update{}
	}
}

// nextOK waits for a successful reload, skipping failed attempts (a file
// written in place may be read half-written).
func nextOK(t *testing.T, updates <-chan update) *policy.Engine {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			if u.err == nil {
				return u.engine
			}
		case <-deadline:
			t.Fatal("no successful reload within 10s")
			return nil
		}
	}
}

func outcome(s policy.Source, caller spiffeid.ID) policy.Outcome {
	return s.Engine().Decide(gwList, caller).Outcome
}

func TestWatcherReloads(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	w, path, updates := watch(t, policyFor("alice"), policy.WithMeterProvider(mp))

	if got := outcome(w, alice); got != policy.Allowed {
		t.Fatalf("before the change, alice: %v, want allow", got)
	}
	checkMetrics(t, reader, 0, 0, 1)

	// A good change takes effect.
	writeAtomic(t, path, policyFor("alice", "bob"))
	u := next(t, updates)
	if u.err != nil {
		t.Fatalf("reload: %v", u.err)
	}
	if u.engine != w.Engine() {
		t.Error("OnUpdate's engine is not the one in force")
	}
	if got := outcome(w, bob); got != policy.Allowed {
		t.Errorf("after the change, bob: %v, want allow", got)
	}
	checkMetrics(t, reader, 1, 0, 2)

	// A bad file changes nothing, and says why.
	good := w.Engine()
	writeAtomic(t, path, badPolicy)
	u = next(t, updates)
	want := path + `:5: rule broken: caller "spiffe://shop.example/user/bob*": wildcards must be a whole path segment (* or a trailing **)`
	if u.err == nil || u.err.Error() != want {
		t.Fatalf("reload error = %v\nwant %s", u.err, want)
	}
	if u.engine != good || w.Engine() != good {
		t.Error("a bad file replaced the engine in force")
	}
	checkMetrics(t, reader, 1, 1, 2)

	// Writing the same bad file again is not another attempt; fixing it is.
	writeAtomic(t, path, badPolicy)
	writeAtomic(t, path, policyFor("bob"))
	if u := next(t, updates); u.err != nil {
		t.Fatalf("reload after the fix: %v", u.err)
	}
	if got := outcome(w, alice); got != policy.Denied {
		t.Errorf("after the fix, alice: %v, want deny", got)
	}
	checkMetrics(t, reader, 2, 1, 1)
}

// checkMetrics checks the reload counters and the rules gauge.
func checkMetrics(t *testing.T, reader sdkmetric.Reader, success, failure, rules int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					result, _ := dp.Attributes.Value(attribute.Key("result"))
					got[m.Name+" "+result.AsString()] = dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range data.DataPoints {
					got[m.Name] = dp.Value
				}
			}
		}
	}
	want := map[string]int64{"trustmesh.policy.rules": rules}
	if success > 0 {
		want["trustmesh.policy.reloads success"] = success
	}
	if failure > 0 {
		want["trustmesh.policy.reloads failure"] = failure
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}

func TestWatcherWriteInPlace(t *testing.T) {
	t.Parallel()
	w, path, updates := watch(t, policyFor("alice"))
	if err := os.WriteFile(path, []byte(policyFor("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	nextOK(t, updates)
	if got := outcome(w, bob); got != policy.Allowed {
		t.Errorf("bob: %v, want allow", got)
	}
}

func TestWatcherRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	w, path, updates := watch(t, policyFor("alice"))
	good := w.Engine()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	u := next(t, updates)
	if !errors.Is(u.err, os.ErrNotExist) || w.Engine() != good {
		t.Fatalf("after removing the file: error %v, engine replaced %v; want a not-exist error and the engine kept", u.err, w.Engine() != good)
	}
	// The same contents as before are a reload again: the file is back.
	writeAtomic(t, path, policyFor("alice"))
	if e := nextOK(t, updates); e.Decide(gwList, alice).Outcome != policy.Allowed {
		t.Error("alice denied after the file came back")
	}
}

// TestWatcherSymlinkSwap replaces the file the way Kubernetes updates a
// mounted ConfigMap: policy.yaml -> ..data/policy.yaml, and ..data, a
// symlink to a timestamped directory, is swapped by a rename.
func TestWatcherSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, data string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "policy.yaml"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", policyFor("alice"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	updates := make(chan update, 10)
	w, err := policy.NewWatcher(t.Context(), path,
		policy.WithDebounce(10*time.Millisecond),
		policy.WithOnUpdate(func(e *policy.Engine, err error) { updates <- update{e, err} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })

	version("..v2", policyFor("bob"))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if u := next(t, updates); u.err != nil {
		t.Fatalf("reload: %v", u.err)
	}
	if got := outcome(w, bob); got != policy.Allowed {
		t.Errorf("after the swap, bob: %v, want allow", got)
	}
}

func TestNewWatcherFailsFast(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	for path, data := range map[string]string{bad: badPolicy, good: policyFor("alice")} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := policy.Policy{Rules: []policy.Rule{{
		Name: "alice-lists", Effect: policy.Allow, Source: "proto shop.gateway.v1.StorefrontService.ListProducts",
		From: []string{"spiffe://shop.example/user/alice"}, To: []string{gwList},
	}}}
	testCases := []struct {
		name string
		path string
		opts []policy.WatcherOption
		want string
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), nil,
			"policy: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"bad file", bad, nil,
			bad + `:5: rule broken: caller "spiffe://shop.example/user/bob*": wildcards must be a whole path segment (* or a trailing **)`},
		{"duplicate rule in the base", good, []policy.WatcherOption{policy.WithBase(base)},
			"proto shop.gateway.v1.StorefrontService.ListProducts: rule alice-lists: duplicate rule name (first declared at " + good + ":3)"},
		{"check fails", good, []policy.WatcherOption{policy.WithCheck(func(e *policy.Engine) error {
			if !e.Covers(charge) {
				return fmt.Errorf("no allow rule for %s", charge)
			}
			return nil
		})}, good + ": no allow rule for " + charge},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := policy.NewWatcher(t.Context(), tc.path, tc.opts...)
			if err == nil {
				_ = w.Close()
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewWatcher error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestWatcherBaseAndCheck(t *testing.T) {
	t.Parallel()
	base := policy.Policy{Rules: []policy.Rule{{
		Name: "proto:orders-charge", Effect: policy.Allow, Source: "proto shop.payments.v1.PaymentService.Charge",
		From: []string{"spiffe://shop.example/ns/shop/sa/orders"}, To: []string{charge},
	}}}
	var checks atomic.Int32
	w, path, updates := watch(t, policyFor("alice"),
		policy.WithBase(base),
		policy.WithCheck(func(e *policy.Engine) error {
			checks.Add(1)
			if !e.Covers(gwList) {
				return fmt.Errorf("uncovered: %s", gwList)
			}
			return nil
		}))
	orders := spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/orders")
	if d := w.Engine().Decide(charge, orders); d.Outcome != policy.Allowed || d.Rule != "proto:orders-charge" {
		t.Errorf("the base rule is not in force: %+v", d)
	}
	if w.Engine().Rules() != 2 {
		t.Errorf("Rules() = %d, want 2", w.Engine().Rules())
	}

	// A policy that fails the check is rejected.
	writeAtomic(t, path, "version: 1\nrules: []\n")
	u := next(t, updates)
	if want := path + ": uncovered: " + gwList; u.err == nil || u.err.Error() != want {
		t.Fatalf("reload error = %v, want %s", u.err, want)
	}
	if got := outcome(w, alice); got != policy.Allowed {
		t.Errorf("after a rejected reload, alice: %v, want allow", got)
	}

	// The base is merged into every reload.
	writeAtomic(t, path, policyFor("bob"))
	e := nextOK(t, updates)
	if d := e.Decide(charge, orders); d.Outcome != policy.Allowed {
		t.Errorf("after a reload, the base rule is not in force: %+v", d)
	}
	if n := checks.Load(); n != 3 {
		t.Errorf("check ran %d times, want 3 (load, rejected reload, reload)", n)
	}
}

// TestWatcherConcurrentDecide decides from many goroutines while the policy
// flips between two versions; run it with -race.
func TestWatcherConcurrentDecide(t *testing.T) {
	t.Parallel()
	w, path, updates := watch(t, policyFor("alice"))
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				// Alice is allowed by both versions; bob by one.
				if got := outcome(w, alice); got != policy.Allowed {
					t.Errorf("alice: %v, want allow", got)
					return
				}
				outcome(w, bob)
			}
		})
	}
	for i := range 10 {
		users := []string{"alice"}
		if i%2 == 0 {
			users = append(users, "bob")
		}
		writeAtomic(t, path, policyFor(users...))
		if u := next(t, updates); u.err != nil {
			t.Fatalf("reload %d: %v", i, u.err)
		}
		if got, want := outcome(w, bob), map[bool]policy.Outcome{true: policy.Allowed, false: policy.Denied}[i%2 == 0]; got != want {
			t.Errorf("reload %d: bob %v, want %v", i, got, want)
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestWatcherCloseWaits checks that Close waits for a reload in progress
// and leaves no goroutine behind. It is not parallel, for goleak.
func TestWatcherCloseWaits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policyFor("alice")), 0o600); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var (
		afterClose atomic.Bool
		once       sync.Once
	)
	w, err := policy.NewWatcher(context.Background(), path,
		policy.WithDebounce(time.Millisecond),
		policy.WithOnUpdate(func(*policy.Engine, error) {
			if afterClose.Load() {
				t.Error("OnUpdate called after Close returned")
			}
			once.Do(func() {
				close(entered)
				<-release
			})
		}))
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, policyFor("bob"))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}

	closed := make(chan error)
	go func() { closed <- w.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a reload was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	afterClose.Store(true)
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := outcome(w, bob); got != policy.Allowed {
		t.Errorf("after Close, the engine in force: bob %v, want allow", got)
	}
}

// TestWatcherContextDone checks that the watcher stops with its context.
func TestWatcherContextDone(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policyFor("alice")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w, err := policy.NewWatcher(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the context was canceled")
	}
}

func TestWatcherCompileOptions(t *testing.T) {
	t.Parallel()
	const reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	data := "version: 1\nrules:\n  - name: users-reflect\n    effect: allow\n" +
		"    from: [spiffe://shop.example/user/*]\n    to: [/grpc.reflection.v1.ServerReflection/*]\n" +
		"    at: [spiffe://shop.example/ns/shop/sa/gateway]\n"
	testCases := []struct {
		name   string
		server string
		want   policy.Outcome
	}{
		{"on the gateway", "spiffe://shop.example/ns/shop/sa/gateway", policy.Allowed},
		{"elsewhere", "spiffe://shop.example/ns/shop/sa/orders", policy.Denied},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, path, updates := watch(t, data, policy.WithCompileOptions(policy.ForServer(spiffeid.RequireFromString(tc.server))))
			if got := w.Engine().Decide(reflect, alice).Outcome; got != tc.want {
				t.Errorf("alice reflects: %v, want %v", got, tc.want)
			}
			// The options apply to reloads too.
			writeAtomic(t, path, strings.Replace(data, "users-reflect", "people-reflect", 1))
			if got := nextOK(t, updates).Decide(reflect, alice); got.Outcome != tc.want {
				t.Errorf("after a reload, alice reflects: %+v, want %v", got, tc.want)
			}
		})
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	e := compile(t, policy.Policy{Rules: []policy.Rule{allow("a", l("spiffe://shop.example/user/alice"), l(gwList))}})
	w, _, _ := watch(t, policyFor("alice"))
	for name, s := range map[string]policy.Source{"engine": e, "watcher": w} {
		if got := outcome(s, alice); got != policy.Allowed {
			t.Errorf("%s: alice %v, want allow", name, got)
		}
	}
}
