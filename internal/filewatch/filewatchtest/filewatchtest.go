// Package filewatchtest helps test the users of filewatch with the file
// changes that used to fool them: a writer that pauses half-way, links
// re-pointed in place.
package filewatchtest

import (
	"os"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds the wait for the watcher to read the first half.
const waitTimeout = 10 * time.Second

// HalfWriter writes a file in two steps and, between them, waits until the
// watcher has read the first: a writer that pauses longer than any settle
// interval, made deterministic. Give [HalfWriter.AfterRead] to the watcher
// as its after-read hook.
type HalfWriter struct {
	first    string
	readHalf chan struct{} // closed once the watcher has read first
	resume   chan struct{} // closed once the rest is written
	mu       sync.Mutex
	seen     bool // the watcher has read first
}

// NewHalfWriter returns a writer whose first step writes first.
func NewHalfWriter(first string) *HalfWriter {
	return &HalfWriter{first: first, readHalf: make(chan struct{}), resume: make(chan struct{})}
}

// AfterRead is the watcher's after-read hook: when the watcher has read
// the first half, it holds the watcher until the rest is written.
func (h *HalfWriter) AfterRead(raw []byte) {
	h.mu.Lock()
	first := !h.seen && string(raw) == h.first
	h.seen = h.seen || first
	h.mu.Unlock()
	if first {
		close(h.readHalf)
		<-h.resume
	}
}

// Write writes the first half over path, which must be shorter than it
// (so that no reader sees it empty, or with old bytes left over), waits
// until the watcher has read it, and writes rest after it. It may be
// called once.
func (h *HalfWriter) Write(t testing.TB, path, rest string) {
	t.Helper()
	if info, err := os.Stat(path); err != nil || info.Size() > int64(len(h.first)) {
		t.Fatalf("%s must exist and be shorter than the first half (%d bytes): %v", path, len(h.first), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString(h.first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.readHalf:
	case <-time.After(waitTimeout):
		t.Fatalf("the watcher did not read the half-written %s within %v", path, waitTimeout)
	}
	if _, err := f.WriteString(rest); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	close(h.resume)
}

// SymlinkAtomic points link at target by renaming a new link over it, so
// that link always exists (ln -sfn removes it first).
func SymlinkAtomic(t testing.TB, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}
