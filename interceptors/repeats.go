package interceptors

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// Refusals are audited one by one, but a flood of identical ones (the same
// caller refused the same way on the same method, thousands of times a
// second) would fill the log: the first of each kind in a window is
// written in full and the rest are counted, and when the window closes one
// line says how many more there were. Nothing is dropped silently.
const (
	// repeatWindow is how long identical refusals are counted before their
	// summary is written.
	repeatWindow = time.Second
	// maxRepeatKinds bounds the kinds of refusal counted at once; beyond
	// it, a caller's refusals are counted together, whatever the method.
	maxRepeatKinds = 4096
)

// repeatKey is what makes two refusals "identical".
type repeatKey struct {
	caller  spiffeid.ID
	method  string // "" when counted together (maxRepeatKinds reached)
	outcome policy.Outcome
	rule    string
	msg     string // the audit event's message
}

// repeats counts identical refusals within a window.
type repeats struct {
	log    *slog.Logger
	window time.Duration

	mu    sync.Mutex
	kinds map[repeatKey]*int // refusals after the first, in the current window
}

func newRepeats(log *slog.Logger) *repeats {
	return &repeats{log: log, window: repeatWindow, kinds: map[repeatKey]*int{}}
}

// first reports whether a refusal of kind k is the first of its window
// (and so is to be written in full); later ones are counted.
func (r *repeats) first(k repeatKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.kinds[k]; ok {
		*n++
		return false
	}
	if len(r.kinds) >= maxRepeatKinds {
		k.method, k.rule = "", ""
		if n, ok := r.kinds[k]; ok {
			*n++
			return false
		}
	}
	n := new(int)
	r.kinds[k] = n
	time.AfterFunc(r.window, func() { r.close(k) })
	return true
}

// close ends k's window, writing its summary if there were repeats.
func (r *repeats) close(k repeatKey) {
	r.mu.Lock()
	n := *r.kinds[k]
	delete(r.kinds, k)
	r.mu.Unlock()
	if n == 0 {
		return
	}
	method := k.method
	if method == "" {
		method = "*"
	}
	r.log.LogAttrs(context.Background(), slog.LevelWarn, k.msg+" repeated",
		slog.String("caller", k.caller.String()),
		slog.String("method", method),
		slog.String("decision", k.outcome.String()),
		slog.String("rule", k.rule),
		slog.Int("repeats", n),
		slog.String("summary", summary(n, r.window)))
}

// summary says how many more refusals there were.
func summary(n int, window time.Duration) string {
	if window == time.Second {
		return strconv.Itoa(n) + " more like this in the last second"
	}
	return strconv.Itoa(n) + " more like this in the last " + window.String()
}
