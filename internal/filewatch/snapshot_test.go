package filewatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAgrees checks that two reads agree only when their bytes and their
// stamps do: a file touched, or a link re-pointed to equal bytes, between
// two reads is not settled, even if no event said so.
func TestAgrees(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b, link := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "link")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte("same"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	read := func() *snapshot[string] {
		data, err := os.ReadFile(link)
		return &snapshot[string]{value: string(data), raw: data, err: err, stamp: stamp([]string{link}, []string{dir})}
	}
	first := read()
	if again := read(); !first.agrees(again) {
		t.Fatalf("two reads of unchanged files do not agree:\n%s\n%s", first.stamp, again.stamp)
	}

	if err := os.Chtimes(a, time.Time{}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	touched := read()
	if first.agrees(touched) {
		t.Error("reads before and after a touch agree")
	}

	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(b, link); err != nil {
		t.Fatal(err)
	}
	if repointed := read(); touched.agrees(repointed) {
		t.Error("reads before and after re-pointing the link to equal bytes agree")
	}

	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	gone, goneAgain := read(), read()
	if gone.err == nil || !gone.agrees(goneAgain) {
		t.Errorf("two reads of a dangling link: errors %v, %v; want the same error, agreeing", gone.err, goneAgain.err)
	}
}
