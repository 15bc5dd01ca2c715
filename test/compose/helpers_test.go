package compose

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// services are the four services of the sample mesh.
var services = []string{"gateway", "orders", "inventory", "payments"}

// repoRoot is the main module's root: two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "compose.yaml")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildOut  []byte
)

// binaries returns the directory holding shop and meshctl: $TRUSTMESH_BIN
// when set (the Makefile passes bin/), else a build of them made once.
func binaries(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	if dir := os.Getenv("TRUSTMESH_BIN"); dir != "" {
		return dir // built by the Makefile (make build)
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "trustmesh-compose-bin")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-o", binDir+"/", "./cmd/shop", "./cmd/meshctl") // as `make build`
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build shop meshctl: %v\n%s", buildErr, buildOut)
	}
	return binDir
}

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, timeout time.Duration, env []string, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
