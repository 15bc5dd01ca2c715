package policy

// WithReadHook calls f from the watcher's goroutine after each read of the
// file on a reload, with what was read, before anything is done with it.
func WithReadHook(f func(data []byte)) WatcherOption {
	return watcherOptionFunc(func(c *watcherConfig) { c.afterRead = f })
}
