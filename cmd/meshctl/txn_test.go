package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/txn"
)

const (
	txnGatewayID = "spiffe://shop.example/ns/shop/sa/gateway"
	txnOrdersID  = "spiffe://shop.example/ns/shop/sa/orders"
	txnMethod    = "/shop.gateway.v1.StorefrontService/PlaceOrder"
)

// mintTxn mints a token for alice with the SVID NAME of a development
// directory, issued at now.
func mintTxn(t *testing.T, dir, name string, now time.Time) *txn.Token {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	minter, err := txn.NewMinter(svid, spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := minter.Mint(context.Background(), txn.Request{
		Subject: spiffeid.RequireFromString("spiffe://shop.example/user/alice"),
		Method:  txnMethod,
		Now:     now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTxnInspect(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	mustRun(t, "certs", "init", "--dir", dir)
	bundle := filepath.Join(dir, "bundle.pem")
	tok := mintTxn(t, dir, "gateway", time.Now())

	out := mustRun(t, "txn", "inspect", tok.Raw(), "--bundle", bundle, "--minter", txnGatewayID)
	for _, want := range []string{
		"header:\n  alg: ES256\n",
		"\n  typ: txntoken+jwt\n",
		"\n  x5c: 1 certificate(s), the signer's chain: leaf " + txnGatewayID + ", expires ",
		"claims (not verified yet):\n  aud:    spiffe://shop.example\n",
		"\n  iss:    " + txnGatewayID + "\n",
		"\n  req_wl: " + txnGatewayID + "\n",
		"\n  scope:  " + txnMethod + "\n",
		"\n  sub:    spiffe://shop.example/user/alice\n",
		"\n  tctx:   {\"method\":\"" + txnMethod + "\"}\n",
		"\n  txn:    " + tok.ID() + "\n",
		"\n  exp:    ", "Z, in 5", // 59s or 58s from now
		"verify:\n  bundle:   " + bundle + " (trust domain shop.example)\n  audience: spiffe://shop.example\n  minters:  " + txnGatewayID + "\n",
		"\nOK: transaction " + tok.ID() + " for spiffe://shop.example/user/alice, minted by " + txnGatewayID + ", expires ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without --minter, any signer the bundle trusts; the output says so.
	out = mustRun(t, "txn", "inspect", "--bundle", bundle, tok.Raw())
	if !strings.Contains(out, "  minters:  any signer (no --minter)\n") || !strings.Contains(out, "\nOK: ") {
		t.Errorf("output without --minter:\n%s", out)
	}

	// "-" reads standard input.
	var stdout bytes.Buffer
	if err := inspectTxn("meshctl txn inspect", []string{"-", "--bundle", bundle}, strings.NewReader(tok.Raw()+"\n"), &stdout, time.Now()); err != nil {
		t.Fatalf("inspect from standard input: %v", err)
	}
	if !strings.Contains(stdout.String(), "\nOK: transaction "+tok.ID()) {
		t.Errorf("output from standard input:\n%s", stdout.String())
	}
}

// TestTxnInspectRefuses: a token a workload would refuse is refused with
// its one-line reason, exit 1; a wrong command line exits 2.
func TestTxnInspectRefuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	mustRun(t, "certs", "init", "--dir", dir)
	otherDir := filepath.Join(t.TempDir(), "other")
	mustRun(t, "certs", "init", "--dir", otherDir)
	bundle := filepath.Join(dir, "bundle.pem")
	good := mintTxn(t, dir, "gateway", time.Now()).Raw()
	expired := mintTxn(t, dir, "gateway", time.Now().Add(-5*time.Minute)).Raw()
	byOrders := mintTxn(t, dir, "orders", time.Now()).Raw()
	enc := base64.RawURLEncoding.EncodeToString
	escape := enc([]byte(`{"alg":"none","typ":"txntoken+jwt"}`)) + "." + enc([]byte(`{"sub":"\u001b[2Jalice"}`)) + "."

	testCases := []struct {
		name       string
		args       []string
		code       int
		wantStderr string // exact, or a prefix when it ends with "*"
	}{
		{"expired", []string{expired, "--bundle", bundle}, exitFailure, "meshctl: txn: token expired: exp *"},
		{"not-a-minter", []string{good, "--bundle", bundle, "--minter", txnOrdersID}, exitFailure,
			"meshctl: txn: signer not a minter: " + txnGatewayID + " may not mint transaction tokens\n"},
		{"signed-by-orders", []string{byOrders, "--bundle", bundle, "--minter", txnGatewayID}, exitFailure,
			"meshctl: txn: signer not a minter: " + txnOrdersID + " may not mint transaction tokens\n"},
		{"wrong-audience", []string{good, "--bundle", bundle, "--audience", "other.example"}, exitFailure,
			`meshctl: txn: wrong audience: token is for "spiffe://shop.example", not "spiffe://other.example"` + "\n"},
		{"other-bundle", []string{good, "--bundle", filepath.Join(otherDir, "bundle.pem")}, exitFailure,
			`meshctl: txn: signer not trusted: x5c chain: identity: client certificate "` + txnGatewayID + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority*`},
		{"truncated", []string{good[:len(good)-5], "--bundle", bundle}, exitFailure,
			"meshctl: txn: malformed token: signature is not base64url: illegal base64 data at input byte 80\n"},
		{"forged-signature", []string{good[:len(good)-8] + "AAAAAAAA", "--bundle", bundle}, exitFailure,
			"meshctl: txn: bad signature: signature does not verify with the key of signer " + txnGatewayID + "\n"},
		{"not-a-token", []string{"hello", "--bundle", bundle}, exitFailure,
			"meshctl: txn: malformed token: not a compact JWS (three base64url parts separated by dots)\n"},
		{"alg-none", []string{escape, "--bundle", bundle}, exitFailure,
			`meshctl: txn: signature algorithm not accepted: alg "none" (want ES256, EdDSA or RS256)` + "\n"},
		{"oversized", []string{strings.Repeat("a", txn.MaxSize+1), "--bundle", bundle}, exitFailure,
			"meshctl: txn: token too large: 8193 bytes, more than 8192\n"},
		{"missing-bundle-file", []string{good, "--bundle", filepath.Join(dir, "nope.pem")}, exitFailure, "meshctl: certs: load bundle *"},
		{"no-token", []string{"--bundle", bundle}, exitUsage,
			"meshctl: txn inspect: want exactly one TOKEN (or - for standard input), got 0 arguments (see 'meshctl txn inspect --help')\n"},
		{"two-tokens", []string{good, good, "--bundle", bundle}, exitUsage,
			"meshctl: txn inspect: want exactly one TOKEN (or - for standard input), got 2 arguments (see 'meshctl txn inspect --help')\n"},
		{"no-bundle", []string{good}, exitUsage, "meshctl: txn inspect: --bundle is required (see 'meshctl txn inspect --help')\n"},
		{"bad-minter", []string{good, "--bundle", bundle, "--minter", "gateway"}, exitUsage, `meshctl: --minter "gateway": scheme is missing or invalid` + "\n"},
		{"bad-audience", []string{good, "--bundle", bundle, "--audience", "Shop.Example"}, exitUsage,
			`meshctl: --audience "Shop.Example": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores` + "\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMeshctl(t, append([]string{"txn", "inspect"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			if prefix, ok := strings.CutSuffix(tc.wantStderr, "*"); ok {
				if !strings.HasPrefix(r.stderr, prefix) || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("stderr = %q\nwant one line starting %q", r.stderr, prefix)
				}
			} else if r.stderr != tc.wantStderr {
				t.Errorf("stderr = %q\n  want %q", r.stderr, tc.wantStderr)
			}
			if strings.Contains(r.stdout, "\x1b") {
				t.Errorf("stdout holds an escape character from the token: %q", r.stdout)
			}
		})
	}
	// What the token says is shown, quoted where it is not printable.
	r := runMeshctl(t, "txn", "inspect", escape, "--bundle", bundle)
	if !strings.Contains(r.stdout, `  sub: "\x1b[2Jalice"`) {
		t.Errorf("the escape sequence is not shown quoted:\n%s", r.stdout)
	}
}

func TestTxnHelp(t *testing.T) {
	t.Parallel()
	if out := mustRun(t, "txn", "inspect", "--help"); !strings.HasPrefix(out, "Usage: meshctl txn inspect TOKEN|- --bundle FILE") || !strings.Contains(out, "-minter") {
		t.Errorf("txn inspect --help:\n%s", out)
	}
	if out := mustRun(t, "txn", "--help"); !strings.Contains(out, "meshctl txn inspect TOKEN|-") {
		t.Errorf("txn --help:\n%s", out)
	}
	if out := mustRun(t, "help"); !strings.Contains(out, "  txn inspect     decode a transaction token and verify it against a trust bundle\n") {
		t.Errorf("help does not list txn inspect:\n%s", out)
	}
}
