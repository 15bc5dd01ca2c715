package spire

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
		{"no-config-dir", Config{StateDir: dir}, "spire: no configuration directory (server.conf and agent.conf)"},
		{"no-config", Config{StateDir: dir, ConfigDir: filepath.Join(dir, "nope")},
			"spire: config: open " + filepath.Join(dir, "nope", "server.conf") + ": no such file or directory (want a directory with server.conf and agent.conf)"},
		{"no-binaries", Config{StateDir: dir, ConfigDir: writeConfig(t, "example.org", "example.org"), BinDir: noBins},
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

// writeConfig writes a server.conf and an agent.conf with the trust
// domains server and agent (no trust_domain line when empty) to a new
// directory and returns it.
func writeConfig(t *testing.T, server, agent string) string {
	t.Helper()
	dir := t.TempDir()
	for name, td := range map[string]string{"server.conf": server, "agent.conf": agent} {
		block := strings.TrimSuffix(name, ".conf")
		content := block + " {\n    bind_address = \"127.0.0.1\"\n"
		if td != "" {
			content += "    trust_domain = \"" + td + "\"\n"
		}
		content += "    data_dir = \"${SPIRE_STATE_DIR}/" + block + "\"\n}\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestConfigTrustDomain: the deployment's trust domain is the one its
// configuration names, in both files; anything else stops Start before a
// process runs.
func TestConfigTrustDomain(t *testing.T) {
	t.Parallel()
	dir := writeConfig(t, "example.org", "example.org")
	td, err := ConfigTrustDomain(dir)
	if err != nil || td.Name() != "example.org" {
		t.Errorf("configTrustDomain = %v, %v; want example.org", td, err)
	}

	testCases := []struct {
		name, server, agent string
		want                string // %s is the directory
	}{
		{"missing", "", "example.org", `spire: config %s/server.conf: no trust_domain = "NAME" line`},
		{"invalid", "Example.org", "example.org", `spire: config %s/server.conf: trust_domain "Example.org": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{"disagree", "example.org", "other.example", `spire: config %s: server.conf has trust_domain "example.org" but agent.conf "other.example"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeConfig(t, tc.server, tc.agent)
			_, err := ConfigTrustDomain(dir)
			if want := fmt.Sprintf(tc.want, dir); err == nil || err.Error() != want {
				t.Errorf("configTrustDomain:\n got %v\nwant %s", err, want)
			}
		})
	}
}

// TestRepositoryConfigTrustDomain reads the trust domain of the SPIRE
// configuration this repository ships (deploy/spire).
func TestRepositoryConfigTrustDomain(t *testing.T) {
	t.Parallel()
	td, err := ConfigTrustDomain(filepath.Join("..", "..", "deploy", "spire"))
	if err != nil || td.IsZero() {
		t.Errorf("deploy/spire: %v, %v", td, err)
	}
}
