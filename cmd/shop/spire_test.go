package main

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUpSPIREMissingBinaries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no-spire")
	t.Setenv("PATH", t.TempDir()) // no spire-agent on $PATH either
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"up", "--spire", "--spire-bin", dir, "--cert-dir", t.TempDir()}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := "shop: spire: spire-agent not found in " + dir + " or $PATH: build it with `make spire`"
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n") // after the log lines of start-up
	if got := lines[len(lines)-1]; got != want {
		t.Errorf("stderr:\n got: %s\nwant: %s", got, want)
	}
}

func TestServeArgs(t *testing.T) {
	var c common
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	c.register(fs, "")
	sp := registerSPIREFlags(fs)
	err := fs.Parse([]string{"--spire", "--log-level", "debug", "--gateway-addr", "127.0.0.1:1", "--spiffe-socket", "unix:///x", "--allow-uncovered", "--rate-limit", "5"})
	if err != nil || !sp.on {
		t.Fatalf("parse: %v (spire %v)", err, sp.on)
	}
	got := serveArgs(fs)
	want := []string{"--allow-uncovered=true", "--log-level=debug", "--rate-limit=5"}
	if !slices.Equal(got, want) {
		t.Errorf("serveArgs = %q, want %q", got, want)
	}
}
