package filewatch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxLinks is how many symlinks resolve follows for one path, as Linux
// does (MAXSYMLINKS is 40).
const maxLinks = 40

// resolve follows path as the operating system would, one name at a time,
// and returns the real path it leads to (no symlink in it) and the real
// directories holding each symlink met on the way: those in the middle of
// the path as well as a chain of links at its end. A name that does not
// exist ends the walk with an error wrapping fs.ErrNotExist; real is then
// what path would be if the missing name were a plain file or directory.
func resolve(path string) (real string, linkDirs []string, err error) {
	abs := path // not cleaned: ".." must apply to where a link leads
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return "", nil, err
		}
		abs = wd + string(filepath.Separator) + path
	}
	vol := filepath.VolumeName(abs)
	root := vol + string(filepath.Separator)
	cur := root
	todo := splitPath(abs[len(vol):])
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		info, err := os.Lstat(next)
		if err != nil {
			return filepath.Join(append([]string{next}, todo...)...), linkDirs, err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return next, linkDirs, fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		linkDirs = append(linkDirs, cur)
		target, err := os.Readlink(next)
		if err != nil {
			return next, linkDirs, err
		}
		if filepath.IsAbs(target) {
			tv := filepath.VolumeName(target)
			cur = tv + string(filepath.Separator)
			target = target[len(tv):]
		}
		todo = append(splitPath(target), todo...)
	}
	return cur, linkDirs, nil
}

// splitPath splits p at its separators, dropping empty names.
func splitPath(p string) []string {
	return slices.DeleteFunc(strings.Split(p, string(filepath.Separator)), func(s string) bool { return s == "" })
}

// watchSet returns, sorted, the directories to watch for files and dirs
// (see [Config]): for each file, the directories holding the links on the
// way to it and the real directory it is in (or, if it does not exist, the
// deepest directory that does, so that its creation is seen); for each
// directory, the same for it and for each of its entries.
func watchSet(files, dirs []string) []string {
	set := map[string]bool{}
	addFile := func(path string) {
		real, linkDirs, err := resolve(path)
		for _, d := range linkDirs {
			set[d] = true
		}
		set[existingDir(real, err)] = true
	}
	for _, f := range files {
		addFile(f)
	}
	for _, d := range dirs {
		real, linkDirs, err := resolve(d)
		for _, l := range linkDirs {
			set[l] = true
		}
		if err != nil {
			set[existingDir(real, err)] = true
			continue
		}
		set[real] = true
		entries, err := os.ReadDir(real)
		if err != nil {
			continue
		}
		for _, e := range entries {
			addFile(filepath.Join(real, e.Name()))
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// existingDir returns the directory that holds real, or, when a name on
// the way to it is missing (err), the deepest directory that exists.
func existingDir(real string, err error) string {
	dir := filepath.Dir(real)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return dir
	}
	for {
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
