package shopmesh

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/internal/spire"
)

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

// TestUpConfig: a missing SPIRE configuration, or one for another trust
// domain than the sample's, stops Up before anything starts.
func TestUpConfig(t *testing.T) {
	t.Parallel()
	bin := t.TempDir() // Up looks for spire-agent first; it never runs here
	if err := os.WriteFile(filepath.Join(bin, "spire-agent"), nil, 0o700); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, name := range []string{"server", "agent"} {
		conf := name + " {\n    trust_domain = \"example.org\"\n}\n"
		if err := os.WriteFile(filepath.Join(other, name+".conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(t.TempDir(), "nope")
	testCases := []struct {
		name, dir, want string
	}{
		{"other trust domain", other, `shopmesh: the SPIRE configuration in ` + other + ` is for trust domain "example.org", not the sample mesh's "shop.example"`},
		{"missing", missing, "shopmesh: SPIRE configuration: stat " + missing + ": no such file or directory (run from the repository root or pass the deploy/spire directory)"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Up(context.Background(), UpConfig{SPIRE: spire.Config{StateDir: t.TempDir(), ConfigDir: tc.dir, BinDir: bin}})
			if err == nil || err.Error() != tc.want {
				t.Errorf("Up:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}
