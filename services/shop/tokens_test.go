package shop_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
	"github.com/trustmesh/trustmesh/tokens"
)

const placeOrderV2 = "shop.gateway.v2.StorefrontService/PlaceOrder"

// startTokenMesh runs the sample mesh with a fresh PKI in a directory that
// also holds the development token issuer's key when withKey is set.
func startTokenMesh(t *testing.T, withKey bool) *shop.Mesh {
	t.Helper()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if withKey {
		if _, err := tokens.InitDev(dir, false); err != nil {
			t.Fatal(err)
		}
	}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := shop.Start(ctx, shop.Config{CertDir: dir, Addrs: addrs, StepInterval: 50 * time.Millisecond,
		PolicyFile: filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := m.Wait(); err != nil {
			t.Errorf("mesh stopped with: %v", err)
		}
	})
	return m
}

// aliceToken mints what `meshctl tokens issue --cert DIR/alice.pem` does.
func aliceToken(t *testing.T, dir string) string {
	t.Helper()
	iss, err := tokens.NewIssuer(tokens.DevIssuer, filepath.Join(dir, tokens.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := shop.LoadCredentials(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	s, err := creds.SVID.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return issueFor(t, iss, s.Certificates[0])
}

// TestGatewayRequiresToken: in the sample policy alice's v2 orders need a
// token bound to her certificate, checked by the gateway as the README
// shows it with grpcurl.
func TestGatewayRequiresToken(t *testing.T) {
	t.Parallel()
	m := startTokenMesh(t, true)
	target := gatewayTarget(m)
	alice := aliceFlags(m.CertDir)
	token := aliceToken(t, m.CertDir)
	order := `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":1}]}`

	// A second certificate with alice's SPIFFE ID (another device, or a
	// stolen token's new home): the policy allows it, the token does not.
	ca, err := certs.LoadCA(m.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://shop.example/user/alice")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certs.WriteSVID(m.CertDir, "alice-laptop", other); err != nil {
		t.Fatal(err)
	}
	laptop := []string{"-cacert", filepath.Join(m.CertDir, "bundle.pem"),
		"-cert", filepath.Join(m.CertDir, "alice-laptop.pem"), "-key", filepath.Join(m.CertDir, "alice-laptop-key.pem")}

	testCases := []struct {
		name  string
		flags []string
		args  []string
		want  string // in grpcurl's output
		ok    bool
	}{
		{"with her token", alice, []string{"-H", "authorization: Bearer " + token}, "ORDER_STATUS_CONFIRMED", true},
		{"without a token", alice, nil, "Message: token required for /" + placeOrderV2, false},
		{"her token from another certificate", laptop, []string{"-H", "authorization: Bearer " + token}, "Message: invalid token: token is bound to another certificate", false},
		{"v2 ListProducts needs no token", alice, nil, "products", true},
	}
	for _, tc := range testCases {
		method, data := placeOrderV2, order
		if strings.Contains(tc.name, "ListProducts") {
			method, data = "shop.gateway.v2.StorefrontService/ListProducts", "{}"
		}
		args := append(append([]string{}, tc.args...), "-d", data, target, method)
		out, err := grpcurl(t, tc.flags, args...)
		if (err == nil) != tc.ok || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v\n%s\nwant %q", tc.name, err, out, tc.want)
		}
		if !tc.ok && !strings.Contains(out, "Code: Unauthenticated") {
			t.Errorf("%s: not Unauthenticated:\n%s", tc.name, out)
		}
	}
}

// TestGatewayWithoutTokenKey: with no token-jwks.json the mesh still
// starts, and the calls that need a token are refused.
func TestGatewayWithoutTokenKey(t *testing.T) {
	t.Parallel()
	m := startTokenMesh(t, false)
	dir := t.TempDir()
	if _, err := tokens.InitDev(dir, false); err != nil {
		t.Fatal(err)
	}
	// A token from a key the gateway does not know: alice's certificate is
	// in m.CertDir, the key in dir.
	iss, err := tokens.NewIssuer(tokens.DevIssuer, filepath.Join(dir, tokens.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := shop.LoadCredentials(m.CertDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	s, err := creds.SVID.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	token := issueFor(t, iss, s.Certificates[0])
	out, err := grpcurl(t, aliceFlags(m.CertDir), "-H", "authorization: Bearer "+token,
		"-d", `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":1}]}`, gatewayTarget(m), placeOrderV2)
	if err == nil || !strings.Contains(out, "Code: Unauthenticated") || !strings.Contains(out, "Message: invalid token: this server has no token issuer configured") {
		t.Errorf("PlaceOrder v2 with a token, no issuer key on the gateway: %v\n%s", err, out)
	}
}

func issueFor(t *testing.T, iss *tokens.Issuer, leaf *x509.Certificate) string {
	t.Helper()
	raw, err := iss.Issue(leaf, shop.WorkloadID(shop.Gateway).String(), 15*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
