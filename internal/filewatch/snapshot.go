package filewatch

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// snapshot is one read of the files: what Read returned, and the stamp of
// the files around it.
type snapshot[T any] struct {
	value T
	raw   []byte
	err   error
	stamp string
}

// agrees reports whether s and o read the same thing: the same bytes (or
// the same error) and the same stamps.
func (s *snapshot[T]) agrees(o *snapshot[T]) bool {
	if (s.err == nil) != (o.err == nil) || s.stamp != o.stamp {
		return false
	}
	if s.err != nil {
		return s.err.Error() == o.err.Error()
	}
	return bytes.Equal(s.raw, o.raw)
}

// stamp describes files and the entries of dirs as they are now: for each,
// the real path it leads to, its size and modification time, or why it
// cannot be read. Two equal stamps a settle interval apart mean that
// nothing was written or re-pointed in between, as far as the file system
// tells.
func stamp(files, dirs []string) string {
	var b strings.Builder
	for _, f := range files {
		stampFile(&b, f)
	}
	for _, d := range dirs {
		stampFile(&b, d)
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // in the stamp of d already
		}
		for _, e := range entries {
			stampFile(&b, filepath.Join(d, e.Name()))
		}
	}
	return b.String()
}

func stampFile(b *strings.Builder, path string) {
	real, _, err := resolve(path)
	if err != nil {
		fmt.Fprintf(b, "%s: %v\n", path, err)
		return
	}
	info, err := os.Stat(real)
	if err != nil {
		fmt.Fprintf(b, "%s: %v\n", path, err)
		return
	}
	fmt.Fprintf(b, "%s -> %s %d %d %v\n", path, real, info.Size(), info.ModTime().UnixNano(), info.Mode())
}
