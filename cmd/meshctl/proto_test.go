package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProtoExport proves that the exported access.proto is the repository's
// own, byte for byte, at its import path, and that a second export replaces
// a stale copy.
func TestProtoExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := readFile(t, filepath.Join("..", "..", "proto", "trustmesh", "v1", "access.proto"))
	dst := filepath.Join(dir, "trustmesh", "v1", "access.proto")

	out := mustRun(t, "proto", "export", dir)
	if out != "wrote "+dst+"\n" {
		t.Errorf("output = %q, want %q", out, "wrote "+dst+"\n")
	}
	if got := readFile(t, dst); !bytes.Equal(got, want) {
		t.Errorf("exported %s differs from proto/trustmesh/v1/access.proto", dst)
	}

	if err := os.WriteFile(dst, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "proto", "export", dir)
	if got := readFile(t, dst); !bytes.Equal(got, want) {
		t.Errorf("a second export left a stale %s", dst)
	}
}

func TestProtoExportErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"no-dir", []string{"proto", "export"}, exitUsage,
			"meshctl: proto export: want exactly one DIR, got 0 arguments (see 'meshctl proto export --help')\n"},
		{"two-dirs", []string{"proto", "export", "a", "b"}, exitUsage,
			"meshctl: proto export: want exactly one DIR, got 2 arguments (see 'meshctl proto export --help')\n"},
		{"dir-is-a-file", []string{"proto", "export", file}, exitFailure,
			"meshctl: proto export: write " + filepath.Join(file, "trustmesh", "v1", "access.proto") +
				": mkdir " + file + ": not a directory\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, tc.args...)
			if r.code != tc.code || r.stderr != tc.inStderr {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr %q", r.code, r.stderr, tc.code, tc.inStderr)
			}
			if strings.Contains(r.stdout, "wrote") {
				t.Errorf("stdout = %q, want nothing written", r.stdout)
			}
		})
	}
}
