package identity_test

import (
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/identity"
)

const (
	jwtSub = "spiffe://shop.example/ns/shop/sa/orders"
	jwtAud = "spiffe://shop.example/ns/shop/sa/inventory"
)

// jwtNow is when the table's tokens are verified.
var jwtNow = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

// TestVerifyJWTSVID: every rule of the JWT-SVID specification, and of the
// SPIFFE bundle format as far as it decides which key verifies a token,
// with a token that follows it and one that breaks it, and the exact error.
func TestVerifyJWTSVID(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256(), "k1")
	k2 := newECKey(t, elliptic.P256(), "k2")
	p384 := newECKey(t, elliptic.P384(), "p384")
	p521 := newECKey(t, elliptic.P521(), "p521")
	rsaK := testKey{kid: "rsa", signer: sharedRSAKey(t)}
	impostor := newECKey(t, elliptic.P256(), "k1") // same kid as k1, not in the bundle
	ca := newTestCA(t, "shop.example")
	psOnly := rsaK.bundleKey()
	psOnly.KeyID, psOnly.Algorithm = "ps-only", "PS256"

	bundle := mustBundle(t, "shop.example",
		identity.BundleKey{Use: identity.UseX509SVID, KeyID: "ca", Certificate: ca.cert},
		k1.bundleKey(), k2.bundleKey(), p384.bundleKey(), p521.bundleKey(), rsaK.bundleKey(), psOnly)
	partner := mustBundle(t, "partner.example", newECKey(t, elliptic.P256(), "pk").bundleKey())
	bundles := identity.NewBundleSet(bundle, partner)

	good := claimsFor(jwtSub, `[`+q(jwtAud)+`]`, jwtNow)
	exp := jwtNow.Add(5 * time.Minute).Unix()
	iat := jwtNow.Unix()
	withClaims := func(members string) string { // good claims with members replaced or added
		return fmt.Sprintf(`{"sub":%q,"aud":[%q],"exp":%d,"iat":%d%s}`, jwtSub, jwtAud, exp, iat, members)
	}

	accepted := []struct {
		name    string
		token   string
		wantKid string
	}{
		{"es256-with-kid", k1.sign(t, "ES256", header("ES256", "k1"), good), "k1"},
		{"no-kid-tried-against-every-jwt-svid-key", k2.sign(t, "ES256", `{"alg":"ES256"}`, good), "k2"},
		{"typ-JOSE", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","typ":"JOSE"}`, good), "k1"},
		{"no-typ", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1"}`, good), "k1"},
		{"aud-as-a-string", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), jwtNow)), "k1"},
		{"aud-among-several", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `["reports",`+q(jwtAud)+`]`, jwtNow)), "k1"},
		{"ES384", p384.sign(t, "ES384", header("ES384", "p384"), good), "p384"},
		{"ES512", p521.sign(t, "ES512", header("ES512", "p521"), good), "p521"},
		{"RS256", rsaK.sign(t, "RS256", header("RS256", "rsa"), good), "rsa"},
		{"RS384", rsaK.sign(t, "RS384", header("RS384", "rsa"), good), "rsa"},
		{"RS512", rsaK.sign(t, "RS512", header("RS512", "rsa"), good), "rsa"},
		{"PS256", rsaK.sign(t, "PS256", header("PS256", "rsa"), good), "rsa"},
		{"PS384", rsaK.sign(t, "PS384", header("PS384", "rsa"), good), "rsa"},
		{"PS512", rsaK.sign(t, "PS512", header("PS512", "rsa"), good), "rsa"},
		{"key-with-alg-for-that-alg", rsaK.sign(t, "PS256", header("PS256", "ps-only"), good), "ps-only"},
		{"no-kid-rsa", rsaK.sign(t, "RS256", `{"alg":"RS256"}`, good), "rsa"},
		{"expired-within-the-leeway", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":%d}`, jwtSub, jwtAud, jwtNow.Add(-identity.JWTSVIDLeeway+time.Second).Unix())), "k1"},
		{"fractional-exp", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":%d.5}`, jwtSub, jwtAud, exp)), "k1"},
	}
	for _, tc := range accepted {
		t.Run("accepts/"+tc.name, func(t *testing.T) {
			t.Parallel()
			svid, err := identity.VerifyJWTSVID(tc.token, bundles, jwtAud, jwtNow)
			if err != nil {
				t.Fatalf("VerifyJWTSVID: %v", err)
			}
			if svid.ID.String() != jwtSub || svid.KeyID != tc.wantKid || svid.Marshal() != tc.token {
				t.Errorf("got ID %s, kid %q; want %s, %q and the token back", svid.ID, svid.KeyID, jwtSub, tc.wantKid)
			}
			if svid.Claims["sub"] != jwtSub {
				t.Errorf("Claims[sub] = %v", svid.Claims["sub"])
			}
		})
	}

	hs256 := func() string { // an HMAC "signed" with the public key's bytes, the classic confusion
		input := b64(`{"alg":"HS256","kid":"k1"}`) + "." + b64(good)
		m := hmac.New(sha256.New, []byte(k1.jwk(t, "jwt-svid")))
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()
	const prefix = "identity: jwt-svid: "
	refused := []struct {
		name    string
		token   string
		wantErr string
	}{
		// Form.
		{"empty", "", "empty token"},
		{"too-large", strings.Repeat("a", identity.MaxJWTSVIDSize+1), fmt.Sprintf("token of %d bytes, more than %d", identity.MaxJWTSVIDSize+1, identity.MaxJWTSVIDSize)},
		{"two-parts", b64(header("ES256", "k1")) + "." + b64(good), "not in JWS Compact Serialization (three base64url parts separated by dots)"},
		{"json-serialization", `{"payload":"` + b64(good) + `","protected":"` + b64(header("ES256", "k1")) + `","signature":"AA"}`, "not in JWS Compact Serialization (three base64url parts separated by dots)"},
		{"padded-base64", b64(header("ES256", "k1")) + "=." + b64(good) + ".AA", "header is not base64url without padding"},
		{"header-not-json", b64("alg") + "." + b64(good) + ".AA", "header is not a JSON object: invalid character 'a' looking for beginning of value"},
		// alg (JWT-SVID 2.1).
		{"alg-none", b64(`{"alg":"none"}`) + "." + b64(good) + ".", `alg "none" is not allowed (want one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512)`},
		{"alg-HS256", hs256, `alg "HS256" is not allowed (want one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512)`},
		{"alg-EdDSA", k1.sign(t, "ES256", `{"alg":"EdDSA","kid":"k1"}`, good), `alg "EdDSA" is not allowed (want one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512)`},
		{"alg-lowercase", k1.sign(t, "ES256", `{"alg":"es256","kid":"k1"}`, good), `alg "es256" is not allowed (want one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512)`},
		{"no-alg", k1.sign(t, "ES256", `{"kid":"k1"}`, good), "no alg header"},
		{"alg-not-a-string", k1.sign(t, "ES256", `{"alg":["ES256"]}`, good), `alg header ["ES256"] is not a string`},
		{"alg-twice", k1.sign(t, "ES256", `{"alg":"none","alg":"ES256","kid":"k1"}`, good), `header is not a JSON object: member "alg" appears twice`},
		// Other headers (JWT-SVID 2: "MUST NOT be included").
		{"header-jku", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","jku":"https://evil.example/jwks"}`, good), `header parameter "jku" is not allowed (a JWT-SVID has only alg, kid and typ)`},
		{"header-jwk", k1.sign(t, "ES256", `{"alg":"ES256","jwk":`+k1.jwk(t, "")+`}`, good), `header parameter "jwk" is not allowed (a JWT-SVID has only alg, kid and typ)`},
		{"header-crit", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","crit":["b64"],"b64":false}`, good), `header parameter "b64" is not allowed (a JWT-SVID has only alg, kid and typ)`},
		{"header-cty", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","cty":"JWT"}`, good), `header parameter "cty" is not allowed (a JWT-SVID has only alg, kid and typ)`},
		{"header-TYP", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","TYP":"JWT"}`, good), `header parameter "TYP" is not allowed (a JWT-SVID has only alg, kid and typ)`},
		// typ (2.3) and kid (2.2).
		{"typ-at+jwt", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","typ":"at+jwt"}`, good), `typ header "at+jwt" is not "JWT" or "JOSE"`},
		{"typ-lowercase", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","typ":"jwt"}`, good), `typ header "jwt" is not "JWT" or "JOSE"`},
		{"typ-not-a-string", k1.sign(t, "ES256", `{"alg":"ES256","kid":"k1","typ":1}`, good), `typ header 1 is not "JWT" or "JOSE"`},
		{"kid-empty", k1.sign(t, "ES256", `{"alg":"ES256","kid":""}`, good), `kid header "" is not a non-empty string`},
		// sub (3.1).
		{"no-sub", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"aud":%q,"exp":%d}`, jwtAud, exp)), "no sub claim"},
		{"sub-not-a-string", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":1,"aud":%q,"exp":%d}`, jwtAud, exp)), "sub claim 1 is not a string"},
		{"sub-not-spiffe", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("alice", q(jwtAud), jwtNow)), `sub claim "alice" is not a SPIFFE ID: scheme is missing or invalid`},
		{"sub-uppercase-trust-domain", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("spiffe://SHOP.example/ns/shop/sa/orders", q(jwtAud), jwtNow)), `sub claim "spiffe://SHOP.example/ns/shop/sa/orders" is not a SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{"sub-without-path", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("spiffe://shop.example", q(jwtAud), jwtNow)), `sub claim "spiffe://shop.example" is a trust domain, not a workload: a JWT-SVID's SPIFFE ID must have a path`},
		{"sub-twice", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"sub":"spiffe://shop.example/ns/ops/sa/admin","aud":%q,"exp":%d}`, jwtSub, jwtAud, exp)), `claims are not a JSON object: member "sub" appears twice`},
		// The key is one of the sub's trust domain (bundle format, JWT-SVID 6.2).
		{"sub-of-a-domain-without-bundle", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("spiffe://elsewhere.example/x", q(jwtAud), jwtNow)), `subject spiffe://elsewhere.example/x: identity: no bundle for trust domain "elsewhere.example"`},
		{"sub-of-another-domain-signed-with-our-key", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("spiffe://partner.example/x", q(jwtAud), jwtNow)), `no jwt-svid key "k1" in the bundle of trust domain "partner.example"`},
		{"sub-of-another-domain-no-kid", k1.sign(t, "ES256", `{"alg":"ES256"}`, claimsFor("spiffe://partner.example/x", q(jwtAud), jwtNow)), `signature verifies with none of the 1 jwt-svid keys of trust domain "partner.example" that fit alg ES256 (the token has no kid)`},
		{"kid-of-an-x509-svid-key", testKey{kid: "ca", signer: ca.key}.sign(t, "ES256", header("ES256", "ca"), good), `key "ca" of trust domain "shop.example" is an x509-svid key, not a jwt-svid key`},
		{"no-kid-signed-by-the-ca-key", testKey{signer: ca.key}.sign(t, "ES256", `{"alg":"ES256"}`, good), `signature verifies with none of the 2 jwt-svid keys of trust domain "shop.example" that fit alg ES256 (the token has no kid)`},
		{"unknown-kid", k1.sign(t, "ES256", header("ES256", "k9"), good), `no jwt-svid key "k9" in the bundle of trust domain "shop.example"`},
		// A long kid is cut to 256 bytes for the error, before the rune
		// that crosses the limit, not in the middle of it.
		{"unknown-long-kid-cut-on-a-rune-boundary", k1.sign(t, "ES256", header("ES256", strings.Repeat("k", 255)+"ékid"), good),
			`no jwt-svid key "` + strings.Repeat("k", 255) + `..." in the bundle of trust domain "shop.example"`},
		{"kid-of-a-key-of-another-curve", k1.sign(t, "ES256", header("ES384", "k1"), good), `jwt-svid key "k1" of trust domain "shop.example" does not fit alg ES384`},
		{"rsa-alg-ec-key", k1.sign(t, "ES256", header("RS256", "k1"), good), `jwt-svid key "k1" of trust domain "shop.example" does not fit alg RS256`},
		{"key-alg-other-than-token-alg", rsaK.sign(t, "RS256", header("RS256", "ps-only"), good), `jwt-svid key "ps-only" of trust domain "shop.example" does not fit alg RS256`},
		{"signed-by-another-key-with-the-same-kid", impostor.sign(t, "ES256", header("ES256", "k1"), good), `signature does not verify with jwt-svid key "k1" of trust domain "shop.example"`},
		{"signature-of-other-claims", k1.sign(t, "ES256", header("ES256", "k1"), good)[:len(b64(header("ES256", "k1")))+1] + b64(withClaims(`,"admin":true`)) + "." + strings.Split(k1.sign(t, "ES256", header("ES256", "k1"), good), ".")[2], `signature does not verify with jwt-svid key "k1" of trust domain "shop.example"`},
		// aud (3.2).
		{"no-aud", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"exp":%d}`, jwtSub, exp)), `no aud claim (want "` + jwtAud + `")`},
		{"aud-empty", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `[]`, jwtNow)), `aud claim is empty (want "` + jwtAud + `")`},
		{"aud-other", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `["spiffe://shop.example/ns/shop/sa/payments"]`, jwtNow)), `aud ["spiffe://shop.example/ns/shop/sa/payments"] does not contain "` + jwtAud + `"`},
		{"aud-prefix-of-ours", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `["spiffe://shop.example/ns/shop/sa"]`, jwtNow)), `aud ["spiffe://shop.example/ns/shop/sa"] does not contain "` + jwtAud + `"`},
		{"aud-null", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `null`, jwtNow)), `aud claim null is not a string or an array of strings`},
		{"aud-array-with-null", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `[null]`, jwtNow)), `aud claim [null] is not a string or an array of strings`},
		{"aud-not-strings", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, `[1]`, jwtNow)), `aud claim [1] is not a string or an array of strings`},
		// exp (3.3) and the other times.
		{"no-exp", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q}`, jwtSub, jwtAud)), "no exp claim"},
		{"expired", k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), jwtNow.Add(-6*time.Minute))), "expired at 2030-01-01T08:59:00Z (now 2030-01-01T09:00:00Z, leeway 30s)"},
		{"exp-a-string", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":"%d"}`, jwtSub, jwtAud, exp)), fmt.Sprintf(`exp claim "%d": not a NumericDate (a number of seconds)`, exp)},
		{"exp-null", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":null}`, jwtSub, jwtAud)), `exp claim null: not a NumericDate (a number of seconds)`},
		{"sub-null", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":null,"aud":%q,"exp":%d}`, jwtAud, exp)), `sub claim "" is not a SPIFFE ID: cannot be empty`},
		{"exp-out-of-range", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":1e300}`, jwtSub, jwtAud)), "exp claim 1e300: out of range"},
		{"nbf-in-the-future", k1.sign(t, "ES256", header("ES256", "k1"), withClaims(fmt.Sprintf(`,"nbf":%d`, jwtNow.Add(time.Minute).Unix()))), "not valid before 2030-01-01T09:01:00Z (now 2030-01-01T09:00:00Z, leeway 30s)"},
		{"iat-in-the-future", k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"aud":%q,"exp":%d,"iat":%d}`, jwtSub, jwtAud, exp, jwtNow.Add(2*time.Minute).Unix())), "issued in the future, at 2030-01-01T09:02:00Z (now 2030-01-01T09:00:00Z, leeway 30s)"},
	}
	for _, tc := range refused {
		t.Run("refuses/"+tc.name, func(t *testing.T) {
			t.Parallel()
			svid, err := identity.VerifyJWTSVID(tc.token, bundles, jwtAud, jwtNow)
			if err == nil {
				t.Fatalf("VerifyJWTSVID accepted it as %s", svid.ID)
			}
			if want := prefix + tc.wantErr; err.Error() != want {
				t.Errorf("error\n got: %s\nwant: %s", err, want)
			}
			if svid != nil {
				t.Errorf("JWTSVID on error = %+v, want nil", svid)
			}
		})
	}
}

func q(s string) string { return fmt.Sprintf("%q", s) }

// TestVerifyJWTSVIDBundles: what a trust domain's bundle trusts. A bundle
// with no keys, or with CA certificates only, trusts no JWT-SVID of its
// domain; the audience and the bundles are required.
func TestVerifyJWTSVIDBundles(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256(), "k1")
	ca := newTestCA(t, "shop.example")
	tok := k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), jwtNow))
	noKid := k1.sign(t, "ES256", `{"alg":"ES256"}`, claimsFor(jwtSub, q(jwtAud), jwtNow))
	testCases := []struct {
		name     string
		bundles  identity.BundleSource
		audience string
		token    string
		wantErr  string
	}{
		{"bundle-with-no-keys", mustParseBundle(t, "shop.example", `{"keys":[]}`), jwtAud, tok,
			`identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`},
		{"bundle-with-no-keys-token-without-kid", mustParseBundle(t, "shop.example", `{"keys":[]}`), jwtAud, noKid,
			`identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`},
		{"bundle-with-only-x509-svid-keys", mustParseBundle(t, "shop.example", `{"keys":[`+ca.jwk(t, "")+`]}`), jwtAud, noKid,
			`identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`},
		{"bundle-whose-only-key-was-ignored", mustParseBundle(t, "shop.example", `{"keys":[`+strings.Replace(k1.jwk(t, "jwt-svid"), `"kty":"EC"`, `"kty":"EC2"`, 1)+`]}`), jwtAud, tok,
			`identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`},
		{"source-gives-another-domain", wrongDomainSource{mustBundle(t, "partner.example", k1.bundleKey())}, jwtAud, tok,
			`identity: jwt-svid: subject spiffe://shop.example/ns/shop/sa/orders: the bundle source gave the bundle of "partner.example" for trust domain "shop.example"`},
		{"no-audience", mustBundle(t, "shop.example", k1.bundleKey()), "", tok, "identity: jwt-svid: no audience to verify for"},
		{"no-bundles", nil, jwtAud, tok, "identity: jwt-svid: no bundle source"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := identity.VerifyJWTSVID(tc.token, tc.bundles, tc.audience, jwtNow)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.wantErr)
			}
		})
	}

	// The same token verifies once the key is in the bundle: what is
	// refused above is the bundle, not the token.
	if _, err := identity.VerifyJWTSVID(tok, mustBundle(t, "shop.example", k1.bundleKey()), jwtAud, jwtNow); err != nil {
		t.Errorf("with the key: %v", err)
	}
}

// wrongDomainSource answers every trust domain with the same bundle.
type wrongDomainSource struct{ b *identity.Bundle }

func (s wrongDomainSource) BundleForTrustDomain(spiffeid.TrustDomain) (*identity.Bundle, error) {
	return s.b, nil
}

// TestVerifyJWTSVIDResult: the verified token's claims, as the result
// gives them.
func TestVerifyJWTSVIDResult(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256(), "k1")
	tok := k1.sign(t, "ES256", header("ES256", "k1"),
		fmt.Sprintf(`{"sub":%q,"aud":["reports",%q],"exp":%d,"iat":%d,"jti":"j-1","x":{"y":1}}`, jwtSub, jwtAud, jwtNow.Add(time.Minute).Unix(), jwtNow.Unix()))
	svid, err := identity.VerifyJWTSVID(tok, mustBundle(t, "shop.example", k1.bundleKey()), jwtAud, jwtNow)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != jwtSub || !svid.Expiry.Equal(jwtNow.Add(time.Minute)) || !svid.IssuedAt.Equal(jwtNow) ||
		len(svid.Audience) != 2 || svid.Audience[1] != jwtAud || svid.KeyID != "k1" {
		t.Errorf("got %+v", svid)
	}
	if svid.Claims["jti"] != "j-1" || svid.Claims["x"].(map[string]any)["y"] != 1.0 {
		t.Errorf("Claims = %v", svid.Claims)
	}
	if svid.Expiry.Location() != time.UTC {
		t.Errorf("Expiry in %v, want UTC", svid.Expiry.Location())
	}
}
