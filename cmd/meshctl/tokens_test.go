package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/tokens"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	mustRun(t, "certs", "init", "--dir", dir)

	out := mustRun(t, "tokens", "init", "--dir", dir)
	if !strings.HasPrefix(out, "created token signing key ") || !strings.Contains(out, "wrote "+filepath.Join(dir, "token-key.pem")) ||
		!strings.Contains(out, "wrote "+filepath.Join(dir, "token-jwks.json")) {
		t.Errorf("tokens init output:\n%s", out)
	}
	info, err := os.Stat(filepath.Join(dir, "token-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("token-key.pem mode = %v, want 0600", info.Mode().Perm())
	}
	jwks := readFile(t, filepath.Join(dir, "token-jwks.json"))
	if out := mustRun(t, "tokens", "init", "--dir", dir); !strings.HasPrefix(out, "kept existing token signing key ") {
		t.Errorf("second tokens init output:\n%s", out)
	}
	if string(readFile(t, filepath.Join(dir, "token-jwks.json"))) != string(jwks) {
		t.Error("second tokens init changed the JWKS")
	}

	aliceFile := filepath.Join(dir, "alice.pem")
	raw := strings.TrimSpace(mustRun(t, "tokens", "issue", "--cert", aliceFile, "--dir", dir, "--ttl", "5m"))
	v, err := tokens.NewVerifier(tokens.Config{Issuer: tokens.DevIssuer, Audience: defaultAudience, JWKSFile: filepath.Join(dir, "token-jwks.json")})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := readLeaf(aliceFile)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := readLeaf(filepath.Join(dir, "admin.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(raw, alice, time.Now())
	if err != nil {
		t.Fatalf("Verify of the issued token: %v", err)
	}
	if c.Subject != "spiffe://shop.example/user/alice" || c.Expiry.Sub(c.IssuedAt) != 5*time.Minute {
		t.Errorf("claims = %+v", c)
	}
	if _, err := v.Verify(raw, admin, time.Now()); err == nil || err.Error() != "tokens: token is bound to another certificate" {
		t.Errorf("Verify with another certificate: %v", err)
	}

	// --aud and --issuer end up in the token.
	raw = strings.TrimSpace(mustRun(t, "tokens", "issue", "--cert", aliceFile, "--dir", dir, "--aud", "other", "--issuer", "https://iss.example"))
	if _, err := v.Verify(raw, alice, time.Now()); err == nil || err.Error() != `tokens: token is from issuer "https://iss.example", not "trustmesh-dev"` {
		t.Errorf("Verify of a token from another issuer: %v", err)
	}
}

func TestTokensErrors(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	mustRun(t, "certs", "init", "--dir", dir)
	alice := filepath.Join(dir, "alice.pem")
	testCases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no cert", []string{"tokens", "issue", "--dir", dir}, exitUsage, "meshctl: tokens issue: --cert is required (see 'meshctl tokens issue --help')\n"},
		{"ttl too long", []string{"tokens", "issue", "--cert", alice, "--ttl", "25h"}, exitUsage, "meshctl: --ttl 25h0m0s: must be at most 24h0m0s\n"},
		{"no key yet", []string{"tokens", "issue", "--cert", alice, "--dir", dir}, exitFailure,
			"meshctl: tokens: open " + filepath.Join(dir, "token-key.pem") + ": no such file or directory (run 'meshctl tokens init --dir " + dir + "' first)\n"},
		{"not a certificate", []string{"tokens", "issue", "--cert", filepath.Join(dir, "alice-key.pem"), "--dir", dir}, exitFailure,
			"meshctl: " + filepath.Join(dir, "alice-key.pem") + ": no PEM CERTIFICATE block found\n"},
		{"unexpected argument", []string{"tokens", "init", "--dir", dir, "extra"}, exitUsage, ""},
		{"unknown subcommand", []string{"tokens", "mint"}, exitUsage, "meshctl: tokens: unknown command \"mint\" (see 'meshctl tokens --help')\n"},
	}
	for _, tc := range testCases {
		r := runMeshctl(t, tc.args...)
		if r.code != tc.code || (tc.want != "" && r.stderr != tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d, %q", tc.name, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

func TestPolicyExplainToken(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", `version: 1
rules:
  - name: alice-orders-with-token
    effect: allow
    require_token: true
    from: ["spiffe://shop.example/user/alice"]
    to: ["/shop.gateway.v2.StorefrontService/PlaceOrder"]
`)
	out := mustRun(t, "policy", "explain", "--protos=false", "--caller", "spiffe://shop.example/user/alice",
		"--method", "/shop.gateway.v2.StorefrontService/PlaceOrder", file)
	if !strings.Contains(out, "rule:     alice-orders-with-token\n") || !strings.Contains(out, "token:    required") {
		t.Errorf("explain output:\n%s", out)
	}
}

func TestPolicyDiffToken(t *testing.T) {
	t.Parallel()
	const base = `version: 1
rules:
  - name: users
    effect: allow
    from: ["spiffe://shop.example/user/*"]
    to: ["/shop.gateway.v2.StorefrontService/*"]
`
	old := writePolicy(t, "old.yaml", base)
	withToken := writePolicy(t, "new.yaml", base+`  - name: alice-orders-with-token
    effect: allow
    require_token: true
    from: ["spiffe://shop.example/user/alice"]
    to: ["/shop.gateway.v2.StorefrontService/PlaceOrder"]
`)
	want := "/shop.gateway.v2.StorefrontService/PlaceOrder: spiffe://shop.example/user/alice now needs a token (allow by rule users -> allow with a token by rule alice-orders-with-token)\n"
	if out := mustRun(t, "policy", "diff", "--protos=false", old, withToken); out != want {
		t.Errorf("diff adding a token rule:\n%s\nwant\n%s", out, want)
	}
	want = "/shop.gateway.v2.StorefrontService/PlaceOrder: spiffe://shop.example/user/alice no longer needs a token (allow with a token by rule alice-orders-with-token -> allow by rule users)\n"
	if out := mustRun(t, "policy", "diff", "--protos=false", withToken, old); out != want {
		t.Errorf("diff removing a token rule:\n%s\nwant\n%s", out, want)
	}
}
