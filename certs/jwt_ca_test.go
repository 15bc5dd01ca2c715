package certs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
)

// TestMintJWTSVID: the development CA mints JWT-SVIDs that verify against
// its SPIFFE bundle, and against nothing else.
func TestMintJWTSVID(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	orders := spiffeid.RequireFromString(ordersID)
	svid, err := ca.MintJWTSVID(certs.JWTRequest{ID: orders, Audience: []string{inventoryID}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != orders || !svid.Expiry.Equal(now.Add(certs.DefaultJWTSVIDTTL)) || !svid.IssuedAt.Equal(now) || svid.KeyID != ca.JWTKeyID() || ca.JWTKeyID() == "" {
		t.Errorf("minted %+v (CA kid %q)", svid, ca.JWTKeyID())
	}
	if _, err := identity.VerifyJWTSVID(svid.Marshal(), ca.SPIFFEBundle(), inventoryID, now.Add(time.Minute)); err != nil {
		t.Errorf("against the CA's bundle: %v", err)
	}
	other, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.VerifyJWTSVID(svid.Marshal(), other, inventoryID, now); err == nil {
		t.Error("verified against another CA's bundle")
	}
	// The bundle holds the root for X.509-SVIDs and the key for JWT-SVIDs,
	// each with its use.
	b := ca.SPIFFEBundle()
	if roots := b.X509Authorities(); len(roots) != 1 || !roots[0].Equal(ca.Certificate()) {
		t.Errorf("X509Authorities = %v", roots)
	}
	if keys := b.JWTKeys(); len(keys) != 1 || keys[0].KeyID != ca.JWTKeyID() || keys[0].Algorithm != "ES256" {
		t.Errorf("JWTKeys = %+v", keys)
	}

	// An intermediate signs JWT-SVIDs with its root's key.
	root, err := certs.NewCA(shop, certs.WithMaxPathLen(1))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	isvid, err := inter.MintJWTSVID(certs.JWTRequest{ID: orders, Audience: []string{inventoryID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.VerifyJWTSVID(isvid.Marshal(), root, inventoryID, time.Time{}); err != nil || inter.JWTKeyID() != root.JWTKeyID() {
		t.Errorf("intermediate's token against the root: %v", err)
	}

	// DevJWTSource fetches what MintJWTSVID mints.
	dsvid, err := ca.JWTSource(orders, time.Minute).FetchJWTSVID(context.Background(), inventoryID)
	if err != nil || dsvid.ID != orders || dsvid.Expiry.Sub(dsvid.IssuedAt) != time.Minute {
		t.Errorf("JWTSource: %+v, %v", dsvid, err)
	}
}

func TestMintJWTSVIDRefuses(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	orders := spiffeid.RequireFromString(ordersID)
	testCases := []struct {
		name    string
		req     certs.JWTRequest
		wantErr string
	}{
		{"no-id", certs.JWTRequest{Audience: []string{"a"}}, "certs: mint JWT-SVID: SPIFFE ID is required"},
		{"other-trust-domain", certs.JWTRequest{ID: spiffeid.RequireFromString("spiffe://partner.example/x"), Audience: []string{"a"}},
			`certs: mint JWT-SVID for spiffe://partner.example/x: not in the CA's trust domain "shop.example"`},
		{"no-path", certs.JWTRequest{ID: shop.ID(), Audience: []string{"a"}}, "certs: mint JWT-SVID for spiffe://shop.example: SPIFFE ID has no path"},
		{"no-audience", certs.JWTRequest{ID: orders}, "certs: mint JWT-SVID for " + ordersID + ": no audience"},
		{"empty-audience", certs.JWTRequest{ID: orders, Audience: []string{""}}, "certs: mint JWT-SVID for " + ordersID + ": empty audience"},
		{"ttl-too-long", certs.JWTRequest{ID: orders, Audience: []string{"a"}, TTL: 2 * time.Hour}, "certs: mint JWT-SVID for " + ordersID + ": TTL 2h0m0s must be from 0 (the default, 5m0s) to 1h0m0s"},
		{"ttl-negative", certs.JWTRequest{ID: orders, Audience: []string{"a"}, TTL: -time.Second}, "certs: mint JWT-SVID for " + ordersID + ": TTL -1s must be from 0 (the default, 5m0s) to 1h0m0s"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ca.MintJWTSVID(tc.req); err == nil || err.Error() != tc.wantErr {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.wantErr)
			}
		})
	}
}

// TestInitJWT: certs init makes a JWT-SVID signing key and writes the trust
// bundle in the SPIFFE bundle format too; LoadCA reads the key back, so
// that the same works without SPIRE; a kept CA keeps its key, one without
// gets one, and --force replaces it.
func TestInitJWT(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := certs.Init(dir, certs.InitOptions{TrustDomain: shop})
	if err != nil {
		t.Fatal(err)
	}
	kid := res.CA.JWTKeyID()
	if !res.JWTKeyCreated || kid == "" {
		t.Fatalf("JWTKeyCreated %v, kid %q", res.JWTKeyCreated, kid)
	}
	for name, mode := range map[string]os.FileMode{certs.JWTKeyFile: 0o600, certs.SPIFFEBundleFile: 0o644} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", name, info, err, mode)
		}
	}
	bundle, err := certs.LoadSPIFFEBundle(filepath.Join(dir, certs.SPIFFEBundleFile), spiffeid.TrustDomain{})
	if err != nil {
		t.Fatal(err)
	}
	if bundle.TrustDomain() != shop || len(bundle.Ignored()) != 0 || len(bundle.X509Authorities()) != 1 || !bundle.X509Authorities()[0].Equal(res.CA.Certificate()) ||
		len(bundle.JWTKeys()) != 1 || bundle.JWTKeys()[0].KeyID != kid {
		t.Errorf("bundle.json: %s, ignored %v, %d roots, jwt keys %+v", bundle.TrustDomain(), bundle.Ignored(), len(bundle.X509Authorities()), bundle.JWTKeys())
	}
	// go-spiffe reads it too.
	gb, err := spiffebundle.Load(shop, filepath.Join(dir, certs.SPIFFEBundleFile))
	if err != nil || len(gb.X509Authorities()) != 1 || !gb.HasJWTAuthority(kid) {
		t.Errorf("spiffebundle.Load: %v, %v", gb, err)
	}

	loaded, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := loaded.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(ordersID), Audience: []string{inventoryID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.VerifyJWTSVID(svid.Marshal(), bundle, inventoryID, time.Time{}); err != nil {
		t.Errorf("a token of the loaded CA against bundle.json: %v", err)
	}

	// Again: the key stays, nothing JWT is rewritten.
	again, err := certs.Init(dir, certs.InitOptions{TrustDomain: shop})
	if err != nil {
		t.Fatal(err)
	}
	if again.JWTKeyCreated || again.CA.JWTKeyID() != kid || len(again.Files) != 0 {
		t.Errorf("second init: JWTKeyCreated %v, kid %q (want %q), files %v", again.JWTKeyCreated, again.CA.JWTKeyID(), kid, again.Files)
	}

	// A directory from before JWT-SVIDs: the CA gets a key.
	for _, name := range []string{certs.JWTKeyFile, certs.SPIFFEBundleFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if old, err := certs.LoadCA(dir); err != nil || old.JWTKeyID() != "" {
		t.Fatalf("LoadCA without a JWT key: kid %q, %v", old.JWTKeyID(), err)
	} else if _, err := old.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(ordersID), Audience: []string{"a"}}); err == nil ||
		err.Error() != `certs: mint JWT-SVID for `+ordersID+`: the CA of "shop.example" has no JWT-SVID signing key (run meshctl certs init to add one)` {
		t.Errorf("mint without a key: %v", err)
	}
	upgraded, err := certs.Init(dir, certs.InitOptions{TrustDomain: shop})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, certs.JWTKeyFile), filepath.Join(dir, certs.SPIFFEBundleFile)}
	if !upgraded.JWTKeyCreated || upgraded.CACreated || !slices.Equal(upgraded.Files, want) || upgraded.CA.JWTKeyID() == kid {
		t.Errorf("upgrade: JWTKeyCreated %v, CACreated %v, files %v", upgraded.JWTKeyCreated, upgraded.CACreated, upgraded.Files)
	}

	// --force: a new CA, a new key; tokens of the old one stop verifying.
	forced, err := certs.Init(dir, certs.InitOptions{TrustDomain: shop, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	newBundle, err := certs.LoadSPIFFEBundle(filepath.Join(dir, certs.SPIFFEBundleFile), shop)
	if err != nil {
		t.Fatal(err)
	}
	_, err = identity.VerifyJWTSVID(svid.Marshal(), newBundle, inventoryID, time.Time{})
	if !forced.JWTKeyCreated || err == nil || !strings.Contains(err.Error(), "no jwt-svid key") {
		t.Errorf("after --force: JWTKeyCreated %v, old token: %v", forced.JWTKeyCreated, err)
	}

	// A bad key file is an error naming it.
	if err := os.WriteFile(filepath.Join(dir, certs.JWTKeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.LoadCA(dir); err == nil || err.Error() != "certs: load CA from "+dir+": "+filepath.Join(dir, certs.JWTKeyFile)+`: no PEM "PRIVATE KEY" block found` {
		t.Errorf("bad key file: %v", err)
	}
}
