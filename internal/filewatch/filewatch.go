package filewatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Config says what to watch and what to do with it.
type Config[T any] struct {
	// Name starts the watcher's log lines ("policy", "certs"). Required.
	Name string

	// Files are the files to watch, following symlinks (see the package
	// doc). At least one of Files and Dirs is required.
	Files []string

	// Dirs are directories whose entries are watched as Files are: a
	// directory of trust bundles, say. By default, there are none.
	Dirs []string

	// Settle is the settle interval: how long the files must be left
	// alone before they are read, and between the two reads that must
	// agree. 0 (the default) or less reads them at once, twice, which
	// protects from nothing: callers set their own default.
	Settle time.Duration

	// Retries is how many more times a change is read (a settle interval
	// apart) after Read or Reload fails on it, before it is rejected: a
	// change written in two files, one after the other, may be caught in
	// between. By default, 0: the first failure rejects it.
	Retries int

	// Loaded is what Read returned (its bytes) for the contents in force
	// at start, read by the caller before Start. Contents equal to those in
	// force (Loaded, then the last ones Reload took), or to the last ones
	// rejected, are not handed to Reload: a change back to what is in
	// force, after a rejected one, is nothing to do. After a read error
	// (a file removed) the next contents that read well are handed to
	// Reload whatever they are, so that the recovery is reported.
	Loaded []byte

	// Read reads the files. It returns what it read and the bytes that
	// stand for it, which two reads must agree on. Required.
	Read func() (T, []byte, error)

	// Reload puts what Read returned in force, or returns why not.
	// Required.
	Reload func(ctx context.Context, v T) error

	// Reject is told why a change was not put in force: the error of Read
	// or Reload, once no retry is left. Required.
	Reject func(ctx context.Context, err error)

	// Logger receives trouble with the watch itself, at Warn. By default,
	// and when nil, logs are discarded.
	Logger *slog.Logger

	// Stopped, when set, is called from the watcher's goroutine as it
	// ends (ctx done or Close), after the last Reload; its error is
	// Close's. By default, there is none.
	Stopped func() error

	// AfterRead, when set, is called after each read, with its bytes,
	// before anything is done with it: a hook for tests. By default,
	// there is none.
	AfterRead func(raw []byte)
}

// Watcher watches files until its context is done or it is closed. Read,
// Reload, Reject and AfterRead are called from its one goroutine, never
// at the same time.
type Watcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error // from tearing down; set before done is closed
}

// Start starts watching what cfg names, until ctx is done or
// [Watcher.Close] is called. The first check comes one settle interval
// after Start, so that a change made between the caller's first read and
// Start is not missed. It fails if a directory to watch cannot be.
func Start[T any](ctx context.Context, cfg Config[T]) (*Watcher, error) {
	switch {
	case len(cfg.Files) == 0 && len(cfg.Dirs) == 0:
		return nil, errors.New("filewatch: no files to watch")
	case cfg.Read == nil || cfg.Reload == nil || cfg.Reject == nil:
		return nil, errors.New("filewatch: Read, Reload and Reject are required")
	}
	cfg.Settle = max(cfg.Settle, 0)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("%s: watch %s: %w", cfg.Name, cfg.what(), err)
	}
	l := &loop[T]{cfg: cfg, fsw: fsw, inForce: cfg.Loaded}
	for _, dir := range watchSet(cfg.Files, cfg.Dirs) {
		if err := fsw.Add(dir); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: watch %s: %w", cfg.Name, dir, err), fsw.Close())
		}
	}
	w := &Watcher{done: make(chan struct{})}
	ctx, w.cancel = context.WithCancel(ctx)
	go func() {
		defer close(w.done)
		l.run(ctx)
		w.err = fsw.Close()
		if cfg.Stopped != nil {
			w.err = errors.Join(w.err, cfg.Stopped())
		}
	}()
	return w, nil
}

// Close stops watching and waits until the watcher's goroutine has
// returned, a Reload in progress included. It is safe to call more than
// once, but not from Reload, Reject or AfterRead.
func (w *Watcher) Close() error {
	w.once.Do(w.cancel)
	<-w.done
	return w.err
}

// what names the watched files in errors and logs.
func (c *Config[T]) what() string {
	if len(c.Files) > 0 {
		return c.Files[0]
	}
	return c.Dirs[0]
}

// loop is the state of the watcher's goroutine.
type loop[T any] struct {
	cfg      Config[T]
	fsw      *fsnotify.Watcher
	timer    *time.Timer
	first    *snapshot[T] // the first of the two reads that must agree, or nil
	inForce  []byte       // the bytes of the contents in force, when known
	lost     bool         // a read error since: nothing is known to be in force
	rejected []byte       // the bytes last rejected by Reload, or nil
	failures int          // failed attempts on the change being read
}

func (l *loop[T]) run(ctx context.Context) {
	l.timer = time.NewTimer(l.cfg.Settle)
	defer l.timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-l.fsw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue // same contents, same names
			}
			l.changed()
		case err, ok := <-l.fsw.Errors:
			if !ok {
				return
			}
			l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, l.cfg.Name+": watching the files failed; reading them again",
				slog.String("file", l.cfg.what()), slog.String("error", err.Error()))
			l.changed()
		case <-l.timer.C:
			l.tick(ctx)
		}
	}
}

// changed starts a settle over: something changed since the last read.
func (l *loop[T]) changed() {
	l.first, l.failures = nil, 0
	l.timer.Reset(l.cfg.Settle)
}

// tick reads the files once the settle interval has passed: the first
// read of two, or the second, which applies the change if both agree.
func (l *loop[T]) tick(ctx context.Context) {
	l.rewatch(ctx)
	s := l.read()
	if l.first == nil || !l.first.agrees(s) {
		l.first = s
		l.timer.Reset(l.cfg.Settle)
		return
	}
	l.first = nil
	l.apply(ctx, s)
}

// read takes a snapshot of the files.
func (l *loop[T]) read() *snapshot[T] {
	s := &snapshot[T]{stamp: stamp(l.cfg.Files, l.cfg.Dirs)}
	s.value, s.raw, s.err = l.cfg.Read()
	if l.cfg.AfterRead != nil {
		l.cfg.AfterRead(s.raw)
	}
	return s
}

// apply hands settled contents to Reload, unless they are those in force
// or the last ones rejected, and retries or rejects them if that fails.
func (l *loop[T]) apply(ctx context.Context, s *snapshot[T]) {
	if s.err == nil && l.failures == 0 && ((!l.lost && bytes.Equal(s.raw, l.inForce)) || (l.rejected != nil && bytes.Equal(s.raw, l.rejected))) {
		return
	}
	err := s.err
	if err == nil {
		err = l.cfg.Reload(ctx, s.value)
	}
	if err != nil && l.failures < l.cfg.Retries {
		l.failures++
		l.timer.Reset(l.cfg.Settle)
		return
	}
	l.failures = 0
	switch {
	case err == nil:
		l.inForce, l.lost, l.rejected = s.raw, false, nil
	case s.err == nil: // Reload refused these contents: not again until they change
		l.rejected = s.raw
	default: // a read error: whatever reads well next is reloaded, even the
		// contents in force (or empty ones), so that the recovery is reported
		l.inForce, l.lost, l.rejected = nil, true, nil
	}
	if err != nil {
		l.cfg.Reject(ctx, err)
	}
}

// rewatch moves the watches to where the links lead now.
func (l *loop[T]) rewatch(ctx context.Context) {
	want := watchSet(l.cfg.Files, l.cfg.Dirs)
	have := l.fsw.WatchList()
	for _, dir := range have {
		if !slices.Contains(want, dir) {
			_ = l.fsw.Remove(dir) // gone already if the directory was removed
		}
	}
	for _, dir := range want {
		if slices.Contains(have, dir) {
			continue
		}
		if err := l.fsw.Add(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, l.cfg.Name+": cannot watch a directory; changes in it are not seen",
				slog.String("file", l.cfg.what()), slog.String("dir", dir), slog.String("error", err.Error()))
		}
	}
}
