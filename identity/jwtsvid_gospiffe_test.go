package identity_test

import (
	"crypto"
	"crypto/elliptic"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/trustmesh/trustmesh/identity"
)

// The places where go-spiffe v2.9's svid/jwtsvid and bundle packages do
// not follow the JWT-SVID and SPIFFE bundle specifications, each shown on
// the same token and bundle: go-spiffe's answer, then ours. go-spiffe
// validates at time.Now(), so these tokens are fresh.

var shopTD = spiffeid.RequireTrustDomainFromString("shop.example")

// TestGoSPIFFEKidRequired: "The kid header is optional" (JWT-SVID 2.2), but
// jwtsvid.ParseAndValidate refuses a token without one; VerifyJWTSVID
// tries it against the trust domain's jwt-svid keys.
func TestGoSPIFFEKidRequired(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1, k2 := newECKey(t, elliptic.P256(), "k1"), newECKey(t, elliptic.P256(), "k2")
	tok := k2.sign(t, "ES256", `{"alg":"ES256","typ":"JWT"}`, claimsFor(jwtSub, q(jwtAud), now))

	gb := jwtbundle.FromJWTAuthorities(shopTD, map[string]crypto.PublicKey{"k1": k1.signer.Public(), "k2": k2.signer.Public()})
	_, gerr := jwtsvid.ParseAndValidate(tok, gb, []string{jwtAud})
	if gerr == nil || gerr.Error() != "jwtsvid: token header missing key id" {
		t.Errorf("go-spiffe: %v; want it to refuse (the defect)", gerr)
	}
	svid, err := identity.VerifyJWTSVID(tok, mustBundle(t, "shop.example", k1.bundleKey(), k2.bundleKey()), jwtAud, now)
	if err != nil || svid.KeyID != "k2" {
		t.Errorf("VerifyJWTSVID = %v, %v; want it verified by k2", svid, err)
	}
}

// TestGoSPIFFEUseIgnored: keys whose use is not jwt-svid never validate a
// JWT (JWT-SVID 6.2: "Implementations MUST extract the JWT-SVID specific
// keys"), but jwtbundle.Parse reads every key of a JWK Set, whatever its
// use: the CA key of an x509-svid entry, or a key of use "sig", then
// verifies JWT-SVIDs.
func TestGoSPIFFEUseIgnored(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1 := newECKey(t, elliptic.P256(), "k1")
	ca := newTestCA(t, "shop.example")
	sig := newECKey(t, elliptic.P256(), "sig")
	doc := `{"keys":[` + k1.jwk(t, "jwt-svid") + `,` + ca.jwk(t, "ca") + `,` + sig.jwk(t, "sig") + `]}`
	gb, err := jwtbundle.Parse(shopTD, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ours := mustParseBundle(t, "shop.example", doc)

	for _, tc := range []struct {
		name, wantErr string
		key           testKey
	}{
		{"signed-by-the-x509-svid-ca-key", `identity: jwt-svid: key "ca" of trust domain "shop.example" is an x509-svid key, not a jwt-svid key`, testKey{kid: "ca", signer: ca.key}},
		{"signed-by-a-key-of-use-sig", `identity: jwt-svid: no jwt-svid key "sig" in the bundle of trust domain "shop.example"`, sig},
	} {
		tok := tc.key.sign(t, "ES256", header("ES256", tc.key.kid), claimsFor(jwtSub, q(jwtAud), now))
		if _, err := jwtsvid.ParseAndValidate(tok, gb, []string{jwtAud}); err != nil {
			t.Errorf("%s: go-spiffe refused it (%v); the defect is that it accepts", tc.name, err)
		}
		if _, err := identity.VerifyJWTSVID(tok, ours, jwtAud, now); err == nil || err.Error() != tc.wantErr {
			t.Errorf("%s: VerifyJWTSVID error\n got: %v\nwant: %s", tc.name, err, tc.wantErr)
		}
	}

	// And jwtbundle.Parse cannot read a standard SPIFFE bundle at all: its
	// x509-svid entry has no kid.
	std := `{"keys":[` + k1.jwk(t, "jwt-svid") + `,` + ca.jwk(t, "") + `]}`
	if _, err := jwtbundle.Parse(shopTD, []byte(std)); err == nil {
		t.Error("go-spiffe: jwtbundle.Parse read a bundle whose x509-svid key has no kid")
	}
	if b := mustParseBundle(t, "shop.example", std); len(b.JWTKeys()) != 1 || len(b.X509Authorities()) != 1 {
		t.Errorf("ParseBundle: %d jwt-svid keys, %d CA certificates; want one each", len(b.JWTKeys()), len(b.X509Authorities()))
	}
}

// TestGoSPIFFEUnknownKeyDiscardsBundle: "Clients encountering an unknown key
// type MUST ignore the entire JWK element" (SPIFFE Trust Domain and Bundle
// 4.2.1), and a jwt-svid key without a kid breaks the publishing rule of
// its element only; go-spiffe's bundle parsers fail on either and discard
// the whole bundle, so the domain's good keys stop verifying. ParseBundle
// ignores the element and keeps the rest.
func TestGoSPIFFEUnknownKeyDiscardsBundle(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1 := newECKey(t, elliptic.P256(), "k1")
	tok := k1.sign(t, "ES256", header("ES256", "k1"), claimsFor(jwtSub, q(jwtAud), now))
	for _, tc := range []struct {
		name, element, wantIgnored string
	}{
		{"unknown-kty", `{"kty":"XYZ","use":"jwt-svid","kid":"next"}`, `key 1: jwt-svid key of unknown key type "XYZ"`},
		{"jwt-svid-key-without-kid", newECKey(t, elliptic.P256(), "").jwk(t, "jwt-svid"), "key 1: jwt-svid key has no kid (JWT-SVID 6.1)"},
	} {
		doc := []byte(`{"keys":[` + k1.jwk(t, "jwt-svid") + `,` + tc.element + `]}`)
		if _, err := spiffebundle.Parse(shopTD, doc); err == nil {
			t.Errorf("%s: spiffebundle.Parse kept the bundle; the defect is that it discards it", tc.name)
		}
		if tc.name == "unknown-kty" {
			if _, err := jwtbundle.Parse(shopTD, doc); err == nil {
				t.Errorf("%s: jwtbundle.Parse kept the bundle; the defect is that it discards it", tc.name)
			}
		}
		b, err := identity.ParseBundle(shopTD, doc)
		if err != nil {
			t.Fatalf("%s: ParseBundle: %v", tc.name, err)
		}
		if ig := b.Ignored(); len(ig) != 1 || ig[0] != tc.wantIgnored {
			t.Errorf("%s: Ignored() = %q, want [%q]", tc.name, ig, tc.wantIgnored)
		}
		if _, err := identity.VerifyJWTSVID(tok, b, jwtAud, now); err != nil {
			t.Errorf("%s: the good key no longer verifies: %v", tc.name, err)
		}
	}
}

// TestGoSPIFFESubjectWithoutPath: a JWT-SVID's sub is "the SPIFFE ID of the
// workload to which it is issued" (JWT-SVID 3.1); go-spiffe accepts the
// trust domain's own ID (no path), which names no workload (SPIFFE-ID 3.1:
// it is the signing authority's), as trustmesh's X.509 rules refuse it.
func TestGoSPIFFESubjectWithoutPath(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1 := newECKey(t, elliptic.P256(), "k1")
	tok := k1.sign(t, "ES256", header("ES256", "k1"), claimsFor("spiffe://shop.example", q(jwtAud), now))
	gb := jwtbundle.FromJWTAuthorities(shopTD, map[string]crypto.PublicKey{"k1": k1.signer.Public()})
	if svid, err := jwtsvid.ParseAndValidate(tok, gb, []string{jwtAud}); err != nil {
		t.Errorf("go-spiffe refused it (%v); the defect is that it accepts", err)
	} else if svid.ID.String() != "spiffe://shop.example" {
		t.Errorf("go-spiffe: ID %s", svid.ID)
	}
	_, err := identity.VerifyJWTSVID(tok, mustBundle(t, "shop.example", k1.bundleKey()), jwtAud, now)
	if want := `identity: jwt-svid: sub claim "spiffe://shop.example" is a trust domain, not a workload: a JWT-SVID's SPIFFE ID must have a path`; err == nil || err.Error() != want {
		t.Errorf("VerifyJWTSVID error\n got: %v\nwant: %s", err, want)
	}
}

// TestGoSPIFFEForbiddenHeaders: "Any header not described here, registered
// or private, MUST NOT be included in the JWT-SVID JOSE Header" (JWT-SVID
// 2); go-spiffe accepts tokens with jku, x5u, cty or private headers.
func TestGoSPIFFEForbiddenHeaders(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1 := newECKey(t, elliptic.P256(), "k1")
	gb := jwtbundle.FromJWTAuthorities(shopTD, map[string]crypto.PublicKey{"k1": k1.signer.Public()})
	ours := mustBundle(t, "shop.example", k1.bundleKey())
	for _, name := range []string{"jku", "x5u", "cty", "x-private"} {
		tok := k1.sign(t, "ES256", fmt.Sprintf(`{"alg":"ES256","kid":"k1","%s":"JWT"}`, name), claimsFor(jwtSub, q(jwtAud), now))
		if _, err := jwtsvid.ParseAndValidate(tok, gb, []string{jwtAud}); err != nil {
			t.Errorf("%s: go-spiffe refused it (%v); the defect is that it accepts", name, err)
		}
		_, err := identity.VerifyJWTSVID(tok, ours, jwtAud, now)
		if want := fmt.Sprintf(`identity: jwt-svid: header parameter %q is not allowed (a JWT-SVID has only alg, kid and typ)`, name); err == nil || err.Error() != want {
			t.Errorf("%s: VerifyJWTSVID error\n got: %v\nwant: %s", name, err, want)
		}
	}
}

// TestGoSPIFFEAudienceOptional: "Validators MUST reject tokens without an
// aud claim set" (JWT-SVID 3.2); given no expected audience,
// jwtsvid.ParseAndValidate checks none and accepts a token without aud.
// VerifyJWTSVID needs the audience and the claim.
func TestGoSPIFFEAudienceOptional(t *testing.T) {
	t.Parallel()
	now := time.Now()
	k1 := newECKey(t, elliptic.P256(), "k1")
	tok := k1.sign(t, "ES256", header("ES256", "k1"), fmt.Sprintf(`{"sub":%q,"exp":%d}`, jwtSub, now.Add(time.Minute).Unix()))
	gb := jwtbundle.FromJWTAuthorities(shopTD, map[string]crypto.PublicKey{"k1": k1.signer.Public()})
	if _, err := jwtsvid.ParseAndValidate(tok, gb, nil); err != nil {
		t.Errorf("go-spiffe refused it (%v); the defect is that it accepts", err)
	}
	ours := mustBundle(t, "shop.example", k1.bundleKey())
	if _, err := identity.VerifyJWTSVID(tok, ours, "", now); err == nil || err.Error() != "identity: jwt-svid: no audience to verify for" {
		t.Errorf("no audience: %v", err)
	}
	_, err := identity.VerifyJWTSVID(tok, ours, jwtAud, now)
	if want := `identity: jwt-svid: no aud claim (want "` + jwtAud + `")`; err == nil || err.Error() != want {
		t.Errorf("no aud claim: %v", err)
	}
}
