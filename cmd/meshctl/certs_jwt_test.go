package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
)

const (
	jwtOrdersID    = "spiffe://shop.example/ns/shop/sa/orders"
	jwtInventoryID = "spiffe://shop.example/ns/shop/sa/inventory"
)

// devJWT initialises a development directory and mints a JWT-SVID for
// orders, for inventory, from its CA.
func devJWT(t *testing.T) (dir string, ca *certs.CA, token string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "dev")
	out := mustRun(t, "certs", "init", "--dir", dir, "--workloads", "", "--identities", "")
	ca, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"created JWT-SVID signing key " + ca.JWTKeyID() + " (ES256)\n  wrote " + filepath.Join(dir, "jwt-key.pem") + "\n",
		"wrote the SPIFFE bundle (x509-svid and jwt-svid keys)\n  wrote " + filepath.Join(dir, "bundle.json") + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("init output lacks %q:\n%s", want, out)
		}
	}
	svid, err := ca.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(jwtOrdersID), Audience: []string{jwtInventoryID}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca, svid.Marshal()
}

// TestCertsInspectJWTSVID: certs inspect decodes a JWT-SVID, prints its
// claims and verifies it against the development CA's SPIFFE bundle, from a
// file, an argument or standard input.
func TestCertsInspectJWTSVID(t *testing.T) {
	t.Parallel()
	dir, ca, token := devJWT(t)
	file := filepath.Join(dir, "orders.jwt")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.json")
	ok := "OK: JWT-SVID of " + jwtOrdersID + " for " + jwtInventoryID + ", signed by jwt-svid key " + ca.JWTKeyID() + ", expires "

	out := mustRun(t, "certs", "inspect", "--audience", jwtInventoryID, file)
	for _, want := range []string{
		"header:\n  alg: ES256\n  kid: " + ca.JWTKeyID() + "\n  typ: JWT\n",
		"claims (not verified yet):\n  aud: [\"" + jwtInventoryID + "\"]\n  exp: ",
		"\n  sub: " + jwtOrdersID + "\n",
		"verify:\n  bundle:   " + bundle + " (trust domain shop.example, 1 jwt-svid key(s))\n  audience: " + jwtInventoryID + "\n",
		ok,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect FILE: output lacks %q:\n%s", want, out)
		}
	}

	// As an argument, with the bundle named; without --audience the
	// token's own is used, and the output says so.
	out = mustRun(t, "certs", "inspect", "--bundle", bundle, token)
	if !strings.Contains(out, "  audience: "+jwtInventoryID+" (the token's own aud: pass --audience to check it is for you)\n") || !strings.Contains(out, ok) {
		t.Errorf("inspect TOKEN:\n%s", out)
	}

	// From standard input.
	var stdout bytes.Buffer
	if err := inspectCerts("meshctl certs inspect", []string{"--bundle", bundle, "--audience", jwtInventoryID, "-"}, strings.NewReader(token+"\n"), &stdout, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), ok) {
		t.Errorf("inspect -:\n%s", stdout.String())
	}

	// A plain JWK Set of the JWT-SVID keys, as the Workload API sends it.
	k := ca.SPIFFEBundle().JWTKeys()[0]
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Key, KeyID: k.KeyID}}})
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "certs", "inspect", "--jwks", "--bundle", jwksFile, "--audience", jwtInventoryID, token); !strings.Contains(out, ok) {
		t.Errorf("inspect --jwks:\n%s", out)
	}
	// Read as a SPIFFE bundle, the same keys say nothing of their use.
	r := runMeshctl(t, "certs", "inspect", "--bundle", jwksFile, "--trust-domain", "shop.example", "--audience", jwtInventoryID, token)
	if r.code != 1 || !strings.Contains(r.stdout, "  ignored:  key 0: no use parameter\n") ||
		r.stderr != `meshctl: identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`+"\n" {
		t.Errorf("JWKS as a SPIFFE bundle: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// TestCertsInspectJWTSVIDRefuses: a JWT-SVID that does not verify exits 1
// with the reason a server would refuse it with.
func TestCertsInspectJWTSVIDRefuses(t *testing.T) {
	t.Parallel()
	dir, ca, token := devJWT(t)
	bundle := filepath.Join(dir, "bundle.json")
	other, err := certs.NewCA(spiffeid.RequireTrustDomainFromString("shop.example"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(jwtOrdersID), Audience: []string{jwtInventoryID}})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(jwtOrdersID), Audience: []string{jwtInventoryID}, Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"another-audience", []string{"--bundle", bundle, "--audience", "spiffe://shop.example/ns/shop/sa/payments", token},
			`identity: jwt-svid: aud ["` + jwtInventoryID + `"] does not contain "spiffe://shop.example/ns/shop/sa/payments"`},
		{"another-ca", []string{"--bundle", bundle, foreign.Marshal()},
			`identity: jwt-svid: no jwt-svid key "` + other.JWTKeyID() + `" in the bundle of trust domain "shop.example"`},
		{"expired", []string{"--bundle", bundle, expired.Marshal()}, "identity: jwt-svid: expired at "},
		{"pem-bundle", []string{"--bundle", filepath.Join(dir, "bundle.pem"), token},
			filepath.Join(dir, "bundle.pem") + " is a PEM bundle, which holds no JWT-SVID keys: give the SPIFFE bundle (bundle.json)"},
	}
	for _, tc := range testCases {
		r := runMeshctl(t, append([]string{"certs", "inspect"}, tc.args...)...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "meshctl: "+tc.wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tc.name, r.code, r.stderr, tc.wantErr)
		}
	}

	// No bundle to be found: decoded, not verified.
	out := mustRun(t, "certs", "inspect", token)
	if !strings.Contains(out, "claims (not verified yet):") || !strings.HasSuffix(out, "not verified: no bundle (give --bundle, e.g. certs/dev/bundle.json)\n") {
		t.Errorf("no bundle:\n%s", out)
	}
	// JWT-SVID flags on a certificate.
	mustRun(t, "certs", "issue", "--dir", dir, "--id", jwtOrdersID, "--name", "orders")
	r := runMeshctl(t, "certs", "inspect", "--audience", jwtInventoryID, filepath.Join(dir, "orders.pem"))
	if r.code != 2 || !strings.Contains(r.stderr, "--audience and --jwks are for JWT-SVIDs; "+filepath.Join(dir, "orders.pem")+" holds a certificate") {
		t.Errorf("--audience on a certificate: exit %d, stderr %q", r.code, r.stderr)
	}
}
