package identity_test

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/identity"
)

// TestParseBundle: the SPIFFE bundle format (SPIFFE Trust Domain and
// Bundle 4): a JWK element that cannot be used is ignored, and says why,
// while the rest of the bundle is kept; a document without keys is an
// error.
func TestParseBundle(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256(), "k1")
	ca := newTestCA(t, "shop.example")
	good := k1.jwk(t, identity.UseJWTSVID)
	// A 1024-bit modulus: crypto/rsa no longer generates such keys, but a
	// bundle can still carry one.
	n, err := rand.Prime(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA := fmt.Sprintf(`{"kty":"RSA","use":"jwt-svid","kid":"small","n":%q,"e":"AQAB"}`, base64.RawURLEncoding.EncodeToString(n.Bytes()))
	one := base64.RawURLEncoding.EncodeToString(append(make([]byte, 31), 1))
	offCurve := fmt.Sprintf(`{"kty":"EC","use":"jwt-svid","kid":"bad","crv":"P-256","x":%q,"y":%q}`, one, one)
	twoCerts := strings.Replace(ca.jwk(t, ""), `"x5c":[`, `"x5c":["`+base64.StdEncoding.EncodeToString(ca.cert.Raw)+`",`, 1)

	testCases := []struct {
		name        string
		element     string // besides good
		wantIgnored string // "" : kept
	}{
		{"x509-svid", ca.jwk(t, ""), ""},
		{"unknown-kty", `{"kty":"XYZ","use":"jwt-svid","kid":"new","x":"AA"}`, `key 0: jwt-svid key of unknown key type "XYZ"`},
		{"kty-OKP-for-jwt-svid", `{"kty":"OKP","use":"jwt-svid","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`, `key 0: jwt-svid key of unknown key type "OKP"`},
		{"kty-oct-an-hmac-secret", `{"kty":"oct","use":"jwt-svid","kid":"hmac","k":"c2VjcmV0"}`, `key 0: jwt-svid key of unknown key type "oct"`},
		{"no-kty", `{"use":"jwt-svid","kid":"k"}`, "key 0: no kty parameter"},
		{"unknown-use", strings.Replace(good, `"use":"jwt-svid"`, `"use":"wit-svid"`, 1), `key 0: unknown use "wit-svid"`},
		{"use-sig", strings.Replace(good, `"use":"jwt-svid"`, `"use":"sig"`, 1), `key 0: unknown use "sig"`},
		{"use-is-case-sensitive", strings.Replace(good, `"use":"jwt-svid"`, `"use":"JWT-SVID"`, 1), `key 0: unknown use "JWT-SVID"`},
		{"no-use", newECKey(t, elliptic.P256(), "nouse").jwk(t, ""), "key 0: no use parameter"},
		{"jwt-svid-without-kid", newECKey(t, elliptic.P256(), "").jwk(t, identity.UseJWTSVID), "key 0: jwt-svid key has no kid (JWT-SVID 6.1)"},
		{"rsa-of-1024-bits", smallRSA, "key 0: RSA key of 1024 bits, fewer than 2048 (RFC 7518 3.3)"},
		{"private-key", strings.Replace(good, `"use"`, `"d":"AAAA","use"`, 1), "key 0: jwt-svid key holds private key material"},
		{"point-off-the-curve", offCurve, "key 0: jwt-svid EC key: invalid EC key, X/Y are not on declared curve"},
		{"x509-svid-with-two-certificates", twoCerts, "key 0: x509-svid key with 2 certificates in x5c, not exactly one (X509-SVID 6.1)"},
		{"not-an-object", `"k1"`, "key 0: not a JSON object: not an object"},
		{"member-twice", strings.Replace(good, `"use":"jwt-svid"`, `"use":"x509-svid","use":"jwt-svid"`, 1), `key 0: not a JSON object: member "use" appears twice`},
		{"jwt-svid-with-x5c", strings.Replace(ca.jwk(t, "cakid"), `"use":"x509-svid"`, `"use":"jwt-svid"`, 1), "key 0: jwt-svid key with an x5c parameter"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := identity.ParseBundle(spiffeid.RequireTrustDomainFromString("shop.example"), []byte(`{"keys":[`+tc.element+`,`+good+`]}`))
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			ignored := b.Ignored()
			if tc.wantIgnored == "" {
				if len(ignored) != 0 || len(b.Keys()) != 2 {
					t.Errorf("ignored %v, kept %d keys; want both kept", ignored, len(b.Keys()))
				}
			} else if len(ignored) != 1 || ignored[0] != tc.wantIgnored {
				t.Errorf("Ignored() = %q, want [%q]", ignored, tc.wantIgnored)
			}
			// The rest of the bundle is kept: k1 still verifies.
			tok := k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), jwtNow))
			if _, err := identity.VerifyJWTSVID(tok, b, jwtAud, jwtNow); err != nil {
				t.Errorf("k1 no longer verifies: %v", err)
			}
		})
	}
}

// TestParseBundleRefuses: documents that are no SPIFFE bundle.
func TestParseBundleRefuses(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("shop.example")
	testCases := []struct {
		name, doc, wantErr string
	}{
		{"no-keys", `{"spiffe_sequence":1}`, `identity: bundle of "shop.example": no "keys" parameter (it must be present, SPIFFE Trust Domain and Bundle 4.1.3)`},
		{"keys-null", `{"keys":null}`, `identity: bundle of "shop.example": no "keys" parameter (it must be present, SPIFFE Trust Domain and Bundle 4.1.3)`},
		{"KEYS", `{"KEYS":[]}`, `identity: bundle of "shop.example": no "keys" parameter (it must be present, SPIFFE Trust Domain and Bundle 4.1.3)`},
		{"keys-not-an-array", `{"keys":{}}`, `identity: bundle of "shop.example": "keys" is not an array`},
		{"keys-twice", `{"keys":[],"keys":[]}`, `identity: bundle of "shop.example": not a JSON object: member "keys" appears twice`},
		{"not-json", `keys`, `identity: bundle of "shop.example": not a JSON object: invalid character 'k' looking for beginning of value`},
		{"an-array", `[]`, `identity: bundle of "shop.example": not a JSON object: not an object`},
		{"trailing-data", `{"keys":[]} {}`, `identity: bundle of "shop.example": not a JSON object: data after the object`},
		{"truncated", `{"keys":[`, `identity: bundle of "shop.example": not a JSON object: unexpected end of JSON`},
		{"bad-sequence", `{"keys":[],"spiffe_sequence":-1}`, `identity: bundle of "shop.example": spiffe_sequence -1 is not an unsigned integer`},
		{"bad-refresh-hint", `{"keys":[],"spiffe_refresh_hint":"1h"}`, `identity: bundle of "shop.example": spiffe_refresh_hint "1h" is not a number of seconds from 0 to 3153600000`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := identity.ParseBundle(td, []byte(tc.doc))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseBundle = %v, %v\nwant error: %s", b, err, tc.wantErr)
			}
		})
	}
	if _, err := identity.ParseBundle(spiffeid.TrustDomain{}, []byte(`{"keys":[]}`)); err == nil || err.Error() != "identity: no trust domain" {
		t.Errorf("zero trust domain: %v", err)
	}

	// An empty key list is a bundle: one that trusts nothing.
	b, err := identity.ParseBundle(td, []byte(`{"keys":[],"spiffe_sequence":7,"spiffe_refresh_hint":300}`))
	if err != nil {
		t.Fatal(err)
	}
	if seq, ok := b.SequenceNumber(); !ok || seq != 7 || b.RefreshHint() != 5*time.Minute || len(b.Keys()) != 0 {
		t.Errorf("sequence %d %v, refresh hint %s, %d keys", seq, ok, b.RefreshHint(), len(b.Keys()))
	}
}

// TestBundleMarshal: a bundle written by Marshal reads back the same,
// keys in order, each with its use.
func TestBundleMarshal(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "shop.example")
	k1 := newECKey(t, elliptic.P256(), "k1")
	rsaK := testKey{kid: "rsa", signer: sharedRSAKey(t)}
	b := mustBundle(t, "shop.example",
		identity.BundleKey{Use: identity.UseX509SVID, Certificate: ca.cert}, k1.bundleKey(), rsaK.bundleKey())
	doc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"use": "x509-svid"`, `"use": "jwt-svid"`, `"kid": "k1"`, `"x5c": [`} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("document lacks %s:\n%s", want, doc)
		}
	}
	back := mustParseBundle(t, "shop.example", string(doc))
	if len(back.Ignored()) != 0 {
		t.Fatalf("ignored %v", back.Ignored())
	}
	got, want := back.Keys(), b.Keys()
	if !slices.EqualFunc(got, want, func(a, b identity.BundleKey) bool {
		return a.Use == b.Use && a.KeyID == b.KeyID && a.Key.(interface{ Equal(crypto.PublicKey) bool }).Equal(b.Key)
	}) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	if auth := back.X509Authorities(); len(auth) != 1 || !auth[0].Equal(ca.cert) {
		t.Errorf("X509Authorities = %v", auth)
	}
	if len(back.JWTKeys()) != 2 {
		t.Errorf("JWTKeys = %v", back.JWTKeys())
	}
}

// TestNewBundleRefuses: NewBundle holds only keys it could use.
func TestNewBundleRefuses(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "shop.example")
	other := newTestCA(t, "shop.example")
	k1 := newECKey(t, elliptic.P256(), "k1")
	p224 := newECKey(t, elliptic.P224(), "p224")
	testCases := []struct {
		name    string
		key     identity.BundleKey
		wantErr string
	}{
		{"jwt-svid-without-kid", identity.BundleKey{Use: identity.UseJWTSVID, Key: k1.signer.Public()}, "jwt-svid key has no kid (JWT-SVID 6.1)"},
		{"jwt-svid-p224", p224.bundleKey(), "EC key on curve P-224, not P-256, P-384 or P-521"},
		{"jwt-svid-no-key", identity.BundleKey{Use: identity.UseJWTSVID, KeyID: "x"}, "no public key"},
		{"jwt-svid-private-key", identity.BundleKey{Use: identity.UseJWTSVID, KeyID: "x", Key: k1.signer}, "*ecdsa.PrivateKey is not an EC or RSA public key"},
		{"x509-svid-without-certificate", identity.BundleKey{Use: identity.UseX509SVID, Key: k1.signer.Public()}, "x509-svid key has no certificate"},
		{"x509-svid-key-of-another-certificate", identity.BundleKey{Use: identity.UseX509SVID, Key: other.key.Public(), Certificate: ca.cert}, "x509-svid key is not the public key of its certificate"},
		{"unknown-use", identity.BundleKey{Use: "sig", KeyID: "x", Key: k1.signer.Public()}, `unknown use "sig"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := identity.NewBundle(spiffeid.RequireTrustDomainFromString("shop.example"), tc.key)
			if want := `identity: bundle of "shop.example": key 0: ` + tc.wantErr; err == nil || err.Error() != want {
				t.Errorf("error\n got: %v\nwant: %s", err, want)
			}
		})
	}
}

// TestBundleSet: one bundle per trust domain.
func TestBundleSet(t *testing.T) {
	t.Parallel()
	a := mustParseBundle(t, "a.example", `{"keys":[]}`)
	b := mustParseBundle(t, "b.example", `{"keys":[]}`)
	set := identity.NewBundleSet(b, nil, a)
	if got, err := set.BundleForTrustDomain(a.TrustDomain()); got != a || err != nil {
		t.Errorf("a.example: %v, %v", got, err)
	}
	if _, err := set.BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("c.example")); err == nil || err.Error() != `identity: no bundle for trust domain "c.example"` {
		t.Errorf("c.example: %v", err)
	}
	if got := set.Bundles(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Bundles() = %v", got)
	}
	if _, err := a.BundleForTrustDomain(b.TrustDomain()); err == nil || err.Error() != `identity: no bundle for trust domain "b.example" (this one is for "a.example")` {
		t.Errorf("a for b: %v", err)
	}
}

// TestParseJWTBundle: a JWT bundle of the Workload API is a plain JWK Set
// (SPIRE omits use): its keys without use are jwt-svid keys, but one that
// says it is for X.509-SVIDs still never verifies a JWT.
func TestParseJWTBundle(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256(), "k1")
	ca := newTestCA(t, "shop.example")
	sig := newECKey(t, elliptic.P256(), "sig")
	doc := `{"keys":[` + k1.jwk(t, "") + `,` + ca.jwk(t, "ca") + `,` + sig.jwk(t, "sig") + `,` + newECKey(t, elliptic.P256(), "k2").jwk(t, "jwt-svid") + `]}`
	b, err := identity.ParseJWTBundle(shopTD, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`key 1: key of use "x509-svid" in a JWT bundle, which holds only jwt-svid keys`,
		`key 2: key of use "sig" in a JWT bundle, which holds only jwt-svid keys`,
	}
	if got := b.Ignored(); !slices.Equal(got, want) {
		t.Errorf("Ignored() = %q\nwant %q", got, want)
	}
	if keys := b.JWTKeys(); len(keys) != 2 || keys[0].KeyID != "k1" || keys[1].KeyID != "k2" {
		t.Errorf("JWTKeys = %+v", keys)
	}
	tok := k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), jwtNow))
	if _, err := identity.VerifyJWTSVID(tok, b, jwtAud, jwtNow); err != nil {
		t.Errorf("k1: %v", err)
	}
	caTok := testKey{kid: "ca", signer: ca.key}.sign(t, "ES256", header("ES256", "ca"), claimsFor(jwtSub, q(jwtAud), jwtNow))
	if _, err := identity.VerifyJWTSVID(caTok, b, jwtAud, jwtNow); err == nil || err.Error() != `identity: jwt-svid: no jwt-svid key "ca" in the bundle of trust domain "shop.example"` {
		t.Errorf("signed by the CA key: %v", err)
	}
	// In the SPIFFE bundle format a key must say what it is for.
	if b := mustParseBundle(t, "shop.example", doc); len(b.JWTKeys()) != 1 || b.Ignored()[0] != "key 0: no use parameter" {
		t.Errorf("ParseBundle: JWTKeys %+v, Ignored %q", b.JWTKeys(), b.Ignored())
	}
	if _, err := identity.ParseJWTBundle(shopTD, []byte(`{}`)); err == nil || err.Error() != `identity: bundle of "shop.example": no "keys" parameter (it must be present, SPIFFE Trust Domain and Bundle 4.1.3)` {
		t.Errorf("no keys: %v", err)
	}
}
