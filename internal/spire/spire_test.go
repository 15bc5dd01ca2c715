package spire

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStartErrors(t *testing.T) {
	// Not parallel: $PATH is emptied so that a spire-server installed on the
	// machine cannot turn the no-binaries case into a skip.
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	noBins := filepath.Join(dir, "empty")
	testCases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no-state-dir", Config{}, "spire: no state directory"},
		{"no-config", Config{StateDir: dir, ConfigDir: filepath.Join(dir, "nope")},
			"spire: config: stat " + filepath.Join(dir, "nope", "server.conf") + ": no such file or directory (run from the repository root or pass the deploy/spire directory)"},
		{"no-binaries", Config{StateDir: dir, ConfigDir: filepath.Join("..", "..", "deploy", "spire"), BinDir: noBins},
			"spire: spire-server not found in " + noBins + " or $PATH: build it with `make spire`"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Start: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLastLine(t *testing.T) {
	t.Parallel()
	var l lastLine
	for _, s := range []string{"first\n", "sec", "ond\n\n  \n", "third"} {
		_, _ = l.Write([]byte(s))
	}
	if got := l.get(); got != "third" {
		t.Errorf("partial line: got %q, want third", got)
	}
	_, _ = l.Write([]byte("\n\n"))
	if got := l.get(); got != "third" {
		t.Errorf("after blank lines: got %q, want third", got)
	}
}

func TestServiceEntries(t *testing.T) {
	t.Parallel()
	entries := ServiceEntries("/opt/shop/bin", 0)
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4", len(entries))
	}
	e := entries[0]
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())
	if got, want := e.ID.String(), "spiffe://shop.example/ns/shop/sa/gateway"; got != want {
		t.Errorf("ID %s, want %s", got, want)
	}
	if got, want := strings.Join(e.Selectors, " "), uid+" unix:path:/opt/shop/bin/shop-gateway"; got != want {
		t.Errorf("selectors %q, want %q", got, want)
	}
	u := UserEntry("alice", "/x/spire-agent")
	if got, want := u.ID.String()+" "+strings.Join(u.Selectors, " "), "spiffe://shop.example/user/alice "+uid+" unix:path:/x/spire-agent"; got != want {
		t.Errorf("user entry %q, want %q", got, want)
	}
}
