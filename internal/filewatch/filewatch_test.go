package filewatch_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trustmesh/trustmesh/internal/filewatch"
	"github.com/trustmesh/trustmesh/internal/filewatch/filewatchtest"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for the watcher.
const waitTimeout = 10 * time.Second

// event is one call of Reload (err nil) or Reject.
type event struct {
	data string
	err  error
}

// watched is a watcher of one file whose Reload and Reject feed events.
type watched struct {
	events chan event
}

// watch starts a watcher of path with a 10ms settle interval whose Reload
// refuses the contents fail returns true for (none if fail is nil);
// change, if not nil, changes the config first.
func watch(t *testing.T, path string, fail func(data string) bool, change func(*filewatch.Config[string])) *watched {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{events: make(chan event, 100)}
	cfg := filewatch.Config[string]{
		Name:   "test",
		Files:  []string{path},
		Settle: 10 * time.Millisecond,
		Loaded: data,
		Read: func() (string, []byte, error) {
			data, err := os.ReadFile(path)
			return string(data), data, err
		},
		Reload: func(_ context.Context, v string) error {
			if fail != nil && fail(v) {
				return fmt.Errorf("refused %q", v)
			}
			w.events <- event{data: v}
			return nil
		},
		Reject: func(_ context.Context, err error) { w.events <- event{err: err} },
	}
	if change != nil {
		change(&cfg)
	}
	fw, err := filewatch.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fw.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// next waits for the next Reload or Reject.
func (w *watched) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-w.events:
		return e
	case <-time.After(waitTimeout):
		t.Fatalf("no reload within %v", waitTimeout)
		return event{}
	}
}

// reloaded waits until data is reloaded, failing on a Reject or a reload
// of anything else.
func (w *watched) reloaded(t *testing.T, data string) {
	t.Helper()
	if e := w.next(t); e.err != nil || e.data != data {
		t.Fatalf("reload = %q, %v; want %q", e.data, e.err, data)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic replaces path by renaming a new file over it.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestReloadsChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "one")
	w := watch(t, path, nil, nil)

	writeAtomic(t, path, "two")
	w.reloaded(t, "two")
	write(t, path, "three") // in place
	w.reloaded(t, "three")

	// The same contents again are not reloaded: the next event is for
	// the change after.
	writeAtomic(t, path, "three")
	writeAtomic(t, path, "four")
	w.reloaded(t, "four")

	// A removed file is rejected with the reason; the same contents as
	// before are reloaded once it is back.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if e := w.next(t); !errors.Is(e.err, fs.ErrNotExist) {
		t.Fatalf("after removing the file: %q, %v; want a not-exist error", e.data, e.err)
	}
	writeAtomic(t, path, "four")
	w.reloaded(t, "four")
}

// TestBackToWhatIsInForce: after a change Reload refused, a change back to
// the contents in force is nothing to do (no Reload: the caller need not
// check for it itself, as certs once did), and the refused contents again
// are not retried until they change.
func TestBackToWhatIsInForce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "good")
	reads := make(chan string, 100)
	w := watch(t, path, func(data string) bool { return data == "bad" }, func(c *filewatch.Config[string]) {
		c.AfterRead = func(raw []byte) { reads <- string(raw) }
	})
	// settled waits until the watcher has read data twice (the two reads
	// that must agree): whatever it does with them is done by the next read.
	settled := func(data string) {
		t.Helper()
		n := 0
		deadline := time.After(waitTimeout)
		for n < 2 {
			select {
			case r := <-reads:
				if r == data {
					n++
				}
			case <-deadline:
				t.Fatalf("%q not read twice within %v", data, waitTimeout)
			}
		}
	}

	writeAtomic(t, path, "bad")
	if e := w.next(t); e.err == nil || e.err.Error() != `refused "bad"` {
		t.Fatalf("bad contents: %q, %v; want refused", e.data, e.err)
	}
	writeAtomic(t, path, "good") // back to what is in force: no event
	settled("good")
	writeAtomic(t, path, "bad") // refused before: no event
	settled("bad")
	writeAtomic(t, path, "better")
	w.reloaded(t, "better")
}

// TestSymlinkTargetEdited edits the file a chain of two links leads to, in
// a third directory: a watcher of the first link sees it.
func TestSymlinkTargetEdited(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a, b, c := mkdir(t, filepath.Join(root, "a")), mkdir(t, filepath.Join(root, "b")), mkdir(t, filepath.Join(root, "c"))
	target := filepath.Join(c, "f")
	write(t, target, "one")
	symlink(t, target, filepath.Join(b, "link"))                        // absolute
	symlink(t, filepath.Join("..", "b", "link"), filepath.Join(a, "f")) // relative
	w := watch(t, filepath.Join(a, "f"), nil, nil)

	writeAtomic(t, target, "two")
	w.reloaded(t, "two")
	write(t, target, "three")
	w.reloaded(t, "three")
}

// TestSymlinkRepointed re-points the second link of a chain into a new
// directory, then edits the file there.
func TestSymlinkRepointed(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a, b, c, d := mkdir(t, filepath.Join(root, "a")), mkdir(t, filepath.Join(root, "b")),
		mkdir(t, filepath.Join(root, "c")), mkdir(t, filepath.Join(root, "d"))
	write(t, filepath.Join(c, "f"), "one")
	write(t, filepath.Join(d, "f"), "two")
	symlink(t, filepath.Join(c, "f"), filepath.Join(b, "link"))
	symlink(t, filepath.Join(b, "link"), filepath.Join(a, "f"))
	w := watch(t, filepath.Join(a, "f"), nil, nil)

	filewatchtest.SymlinkAtomic(t, filepath.Join(d, "f"), filepath.Join(b, "link"))
	w.reloaded(t, "two")
	writeAtomic(t, filepath.Join(d, "f"), "three")
	w.reloaded(t, "three")
	// The old target is no longer what the link leads to: editing it and
	// then the new one reloads the new one only.
	writeAtomic(t, filepath.Join(c, "f"), "old")
	writeAtomic(t, filepath.Join(d, "f"), "four")
	w.reloaded(t, "four")
}

// TestDirectorySymlinkRepointed re-points a directory symlink in the
// middle of the path.
func TestDirectorySymlinkRepointed(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, filepath.Join(mkdir(t, filepath.Join(root, "v1")), "f"), "one")
	write(t, filepath.Join(mkdir(t, filepath.Join(root, "v2")), "f"), "two")
	conf := mkdir(t, filepath.Join(root, "etc"))
	symlink(t, filepath.Join(root, "v1"), filepath.Join(conf, "current"))
	w := watch(t, filepath.Join(conf, "current", "f"), nil, nil)

	filewatchtest.SymlinkAtomic(t, filepath.Join(root, "v2"), filepath.Join(conf, "current"))
	w.reloaded(t, "two")
	writeAtomic(t, filepath.Join(root, "v2", "f"), "three")
	w.reloaded(t, "three")
}

// TestConfigMapSwap updates the file the way Kubernetes updates a mounted
// ConfigMap: f -> ..data/f, and ..data, a symlink to a timestamped
// directory, is swapped by a rename; the old directory is then removed.
func TestConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, data string) {
		write(t, filepath.Join(mkdir(t, filepath.Join(dir, name)), "f"), data)
	}
	version("..v1", "one")
	symlink(t, "..v1", filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "f"), filepath.Join(dir, "f"))
	w := watch(t, filepath.Join(dir, "f"), nil, nil)

	for i, data := range []string{"two", "three"} {
		version(fmt.Sprintf("..v%d", i+2), data)
		filewatchtest.SymlinkAtomic(t, fmt.Sprintf("..v%d", i+2), filepath.Join(dir, "..data"))
		if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..v%d", i+1))); err != nil {
			t.Fatal(err)
		}
		w.reloaded(t, data)
	}
}

// TestDirsEntries watches a directory whose entries are symlinks into
// another one.
func TestDirsEntries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir, store := mkdir(t, filepath.Join(root, "dir")), mkdir(t, filepath.Join(root, "store"))
	write(t, filepath.Join(store, "a"), "one")
	symlink(t, filepath.Join(store, "a"), filepath.Join(dir, "a"))
	read := func() (string, []byte, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", nil, err
		}
		var b strings.Builder
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return "", nil, err
			}
			fmt.Fprintf(&b, "%s=%s;", e.Name(), data)
		}
		return b.String(), []byte(b.String()), nil
	}
	_, loaded, err := read()
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, filepath.Join(dir, "a"), nil, func(c *filewatch.Config[string]) {
		c.Files, c.Dirs, c.Loaded, c.Read = nil, []string{dir}, loaded, read
	})

	writeAtomic(t, filepath.Join(store, "a"), "two")
	w.reloaded(t, "a=two;")
	write(t, filepath.Join(dir, "b"), "new")
	w.reloaded(t, "a=two;b=new;")
}

// TestHalfWrittenNeverApplied writes a file in two steps with a pause
// between them longer than the settle interval: the watcher reads the
// first half, but never applies it.
func TestHalfWrittenNeverApplied(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "one")
	h := filewatchtest.NewHalfWriter("half")
	w := watch(t, path, nil, func(c *filewatch.Config[string]) { c.AfterRead = h.AfterRead })

	h.Write(t, path, "-and-the-rest")
	w.reloaded(t, "half-and-the-rest")
}

// TestRetries refuses a change: it is read Retries more times, then
// rejected once, and not tried again until it changes.
func TestRetries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "one")
	var (
		mu       sync.Mutex
		attempts int
	)
	fail := func(data string) bool {
		mu.Lock()
		defer mu.Unlock()
		if data == "bad" {
			attempts++
			return true
		}
		return false
	}
	w := watch(t, path, fail, func(c *filewatch.Config[string]) { c.Retries = 2 })
	writeAtomic(t, path, "bad")
	if e := w.next(t); e.err == nil || e.err.Error() != `refused "bad"` {
		t.Fatalf("got %q, %v; want the rejection of bad", e.data, e.err)
	}
	mu.Lock()
	if attempts < 3 {
		t.Errorf("bad was tried %d times, want 3 (once and two retries)", attempts)
	}
	mu.Unlock()
	writeAtomic(t, path, "bad")
	writeAtomic(t, path, "good")
	w.reloaded(t, "good")
}

func TestCloseAndContext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "one")
	cfg := filewatch.Config[string]{
		Name:   "test",
		Files:  []string{path},
		Read:   func() (string, []byte, error) { return "", nil, nil },
		Reload: func(context.Context, string) error { return nil },
		Reject: func(context.Context, error) {},
	}
	ctx, cancel := context.WithCancel(t.Context())
	fw, err := filewatch.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error)
	go func() { done <- fw.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return after the context was canceled")
	}
	if err := fw.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	read := func() (string, []byte, error) { return "", nil, nil }
	reload := func(context.Context, string) error { return nil }
	reject := func(context.Context, error) {}
	testCases := []struct {
		name string
		cfg  filewatch.Config[string]
		want string
	}{
		{"no files", filewatch.Config[string]{Name: "test", Read: read, Reload: reload, Reject: reject},
			"filewatch: no files to watch"},
		{"no read", filewatch.Config[string]{Name: "test", Files: []string{"f"}, Reload: reload, Reject: reject},
			"filewatch: Read, Reload and Reject are required"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fw, err := filewatch.Start(t.Context(), tc.cfg)
			if err == nil {
				_ = fw.Close()
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Start error = %v, want %s", err, tc.want)
			}
		})
	}
}

// TestEmptyAfterReadError: after a read error nothing is in force, so the
// next contents that read well are reloaded, even empty ones (an empty
// file once matched "nothing in force" and was neither reloaded nor
// rejected).
func TestEmptyAfterReadError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "good")
	w := watch(t, path, nil, func(c *filewatch.Config[string]) { c.Retries = 0 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if e := w.next(t); e.err == nil {
		t.Fatalf("a removed file: reload %q, want a read error", e.data)
	}
	writeAtomic(t, path, "")
	w.reloaded(t, "")
}
