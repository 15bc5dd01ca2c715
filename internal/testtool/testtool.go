// Package testtool finds the command-line tools pinned in tools/go.mod
// (grpcurl, grpc-health-probe, ghz, ...) for tests that drive the real
// binaries. It builds them through `go tool -n`, which caches the build.
package testtool

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	paths = map[string]string{}
)

// Path returns the path of the binary of the pinned tool name, building it if
// needed. It fails the test when the tool cannot be built: a test that needs
// a real client never silently skips.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := paths[name]; ok {
		return p
	}
	root := RepoRoot(tb)
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "-n", name)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("testtool: build %s with go tool: %v: %s", name, err, stderr.String())
	}
	p := strings.TrimSpace(string(out))
	paths[name] = p
	return p
}

// RepoRoot returns the root of the trustmesh module (the directory holding
// its go.mod), found by walking up from the working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("testtool: %v", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/trustmesh/trustmesh\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("testtool: no trustmesh go.mod above the working directory")
		}
		dir = parent
	}
}
