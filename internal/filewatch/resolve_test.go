package filewatch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(parts ...string) string {
		p := filepath.Join(append([]string{root}, parts...)...)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target string, parts ...string) {
		if err := os.Symlink(target, filepath.Join(append([]string{root}, parts...)...)); err != nil {
			t.Fatal(err)
		}
	}
	a, b, c := mk("a"), mk("b"), mk("c", "v1")
	if err := os.WriteFile(filepath.Join(c, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link("v1", "c", "current")                                 // a directory link
	link(filepath.Join("..", "c", "current", "f"), "b", "f")   // through it
	link(filepath.Join(b, "f"), "a", "f")                      // a chain
	link("loop2", "a", "loop1")                                // a loop
	link("loop1", "a", "loop2")                                //
	link(filepath.Join(root, "nowhere", "f"), "a", "dangling") // a missing target

	testCases := []struct {
		name      string
		path      string
		wantReal  string
		wantDirs  []string
		wantError string // "" for none, "not exist" for fs.ErrNotExist
	}{
		{"plain", filepath.Join(c, "f"), filepath.Join(c, "f"), nil, ""},
		{"chain through a directory link", filepath.Join(a, "f"), filepath.Join(c, "f"), []string{a, b, filepath.Join(root, "c")}, ""},
		{"dot dot after a link", root + "/c/current/../v1/f", filepath.Join(c, "f"), []string{filepath.Join(root, "c")}, ""},
		{"dangling", filepath.Join(a, "dangling"), filepath.Join(root, "nowhere", "f"), []string{a}, "not exist"},
		{"loop", filepath.Join(a, "loop1"), filepath.Join(a, "loop1"), nil, filepath.Join(a, "loop1") + ": too many levels of symbolic links"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			real, dirs, err := resolve(tc.path)
			switch {
			case tc.wantError == "" && err != nil, tc.wantError == "not exist" && !errors.Is(err, fs.ErrNotExist):
				t.Fatalf("error = %v, want %s", err, tc.wantError)
			case tc.wantError != "" && tc.wantError != "not exist" && (err == nil || err.Error() != tc.wantError):
				t.Fatalf("error = %v, want %s", err, tc.wantError)
			}
			if tc.name == "loop" {
				if len(dirs) != maxLinks || dirs[0] != a {
					t.Errorf("a loop gave %d link directories, want %d of %s", len(dirs), maxLinks, a)
				}
				return
			}
			if real != tc.wantReal || !slices.Equal(dirs, tc.wantDirs) {
				t.Errorf("resolve(%s) = %s, %v; want %s, %v", tc.path, real, dirs, tc.wantReal, tc.wantDirs)
			}
		})
	}

	// A missing file is watched from the deepest directory that exists.
	if got := watchSet([]string{filepath.Join(root, "nowhere", "deeper", "f")}, nil); !slices.Equal(got, []string{root}) {
		t.Errorf("watchSet of a missing file = %v, want [%s]", got, root)
	}
	// A file through the chain: every link's directory and the target's.
	if got, want := watchSet([]string{filepath.Join(a, "f")}, nil), []string{a, b, filepath.Join(root, "c"), c}; !slices.Equal(got, want) {
		t.Errorf("watchSet = %v, want %v", got, want)
	}
}
