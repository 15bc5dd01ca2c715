package shop_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// TestStartupErrorsSayWhatToDo: each way credentials or the token issuer
// can be wrong at start-up names the problem and the fix.
func TestStartupErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	expired := t.TempDir()
	if _, err := sample.InitCerts(expired, certs.InitOptions{TTL: time.Hour, Now: time.Now().Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	missingFed := filepath.Join(t.TempDir(), "no-such-dir")
	testCases := []struct {
		name string
		cfg  shop.Config
		want []string
	}{
		{"no-certificates", shop.Config{CertDir: t.TempDir()},
			[]string{"no such file or directory", "create them with `meshctl certs init --dir "}},
		{"expired-svid", shop.Config{CertDir: expired},
			[]string{"SVID expired at", "renew it with `meshctl certs rotate --dir " + expired + " orders`"}},
		{"missing-federation-dir", shop.Config{CertDir: dir, FederationDir: missingFed},
			[]string{missingFed, "check --federation-dir / SHOP_FEDERATION_DIR"}},
		{"missing-token-jwks", shop.Config{CertDir: dir, TokenJWKSFile: filepath.Join(dir, "typo.json")},
			[]string{"typo.json", "no such file or directory"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tc.cfg.PolicyFile = filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = shop.Serve(ctx, shop.Orders, ln, tc.cfg)
			if err == nil {
				t.Fatal("Serve started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}
