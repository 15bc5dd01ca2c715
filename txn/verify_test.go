package txn_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/txn"
)

// TestVerifyRefuses: every forged, expired, truncated, oversized,
// re-signed, wrong-typ, wrong-aud or otherwise wrong token is refused with
// one clear error and the sentinel to branch on.
func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	now := m.now
	good := m.mint(t).Raw()
	gwKey := m.gateway.PrivateKey
	gwHeader := goodHeader(m.gateway)
	claims := func(edit func(map[string]any)) map[string]any {
		c := goodClaims(now)
		edit(c)
		return c
	}
	header := func(edit func(map[string]any)) map[string]any {
		h := goodHeader(m.gateway)
		edit(h)
		return h
	}
	outsider := testpki.New(t, "shop.example").SVID(t, gatewayID) // same ID, a CA outside the bundle
	expiredLeaf, expiredKey := m.pki.Leaf(t, testpki.Expired)
	expiredHeader := map[string]any{"typ": txn.TokenType, "x5c": []string{b64(expiredLeaf.Raw)}}
	edSVID := svidWithKey(t, m.pki, gatewayID, ed25519Key(t))
	edToken := sign(t, edSVID.PrivateKey, jose.EdDSA, goodHeader(edSVID), goodClaims(now))
	p384 := svidWithKey(t, m.pki, gatewayID, ecdsaKey(t, elliptic.P384()))
	rsa1024 := svidWithKey(t, m.pki, gatewayID, rsaKey(t, 1024))
	rsaSVID := svidWithKey(t, m.pki, gatewayID, rsaKey(t, 2048))
	rsaToken := sign(t, rsaSVID.PrivateKey, jose.RS256, goodHeader(rsaSVID), goodClaims(now))
	const signedBy = " of signer " + gatewayID

	testCases := []struct {
		name string
		raw  string
		kind error
		want string // the exact error text; a trailing "*" matches any end
	}{
		{"empty", "", txn.ErrMalformed, "txn: malformed token: empty token"},
		{"oversized", good + "." + strings.Repeat("A", txn.MaxSize), txn.ErrTooLarge,
			fmt.Sprintf("txn: token too large: %d bytes, more than 8192", len(good)+1+txn.MaxSize)},
		{"truncated", good[:len(good)-10], txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"truncated-signature-not-base64", good[:len(good)-5], txn.ErrMalformed,
			"txn: malformed token: signature is not base64url: illegal base64 data at input byte 80"},
		{"claims-not-base64", replaceClaimsRaw(good, "e30*"), txn.ErrMalformed,
			"txn: malformed token: claims part is not base64url: illegal base64 data at input byte 3"},
		{"truncated-to-two-parts", good[:strings.LastIndex(good, ".")], txn.ErrMalformed,
			"txn: malformed token: not a compact JWS (three base64url parts separated by dots)"},
		{"truncated-header", good[:20], txn.ErrMalformed, "txn: malformed token: not a compact JWS (three base64url parts separated by dots)"},
		{"not-a-jwt", "hello.world.again", txn.ErrMalformed, "txn: malformed token: header is not base64url: illegal base64 data at input byte 4"},
		{"header-not-json", "aGVsbG8.e30.c2ln", txn.ErrMalformed, "txn: malformed token: header is not a JSON object: invalid character 'h' looking for beginning of value"},
		{"header-json-array", encodeJSON(t, []int{1}) + ".e30.c2ln", txn.ErrMalformed,
			"txn: malformed token: header is not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
		{"typ-in-capitals", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { delete(h, "typ"); h["TYP"] = txn.TokenType }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: no typ header (want "txntoken+jwt")`},
		{"alg-not-a-string", replaceHeader(t, good, func(h map[string]any) { h["alg"] = 256 }), txn.ErrMalformed,
			"txn: malformed token: alg header 256 is not a string"},
		{"x5c-not-an-array", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["x5c"] = "MIIB" }), goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: x5c header is not an array of strings"},
		{"forged-signature", flipSignature(good), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"forged-claims", replaceClaims(t, good, func(c map[string]any) { c["sub"] = "spiffe://shop.example/user/mallory" }), txn.ErrSignature,
			"txn: bad signature: signature does not verify with the key" + signedBy},
		{"expired", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-2*time.Minute).Unix(), now.Add(-6*time.Second).Unix()
		})), txn.ErrExpired, fmt.Sprintf("txn: token expired: exp %s is more than 5s before %s", utc(now.Add(-6*time.Second)), utc(now))},
		{"issued-in-the-future", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(6*time.Second).Unix(), now.Add(time.Minute).Unix()
		})), txn.ErrNotYetValid, fmt.Sprintf("txn: token not yet valid: iat %s is more than 5s after %s", utc(now.Add(6*time.Second)), utc(now))},
		{"not-before-in-the-future", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Second).Unix() })),
			txn.ErrNotYetValid, fmt.Sprintf("txn: token not yet valid: nbf %s is more than 5s after %s", utc(now.Add(10*time.Second)), utc(now))},
		{"lifetime-too-long", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["exp"] = now.Add(11 * time.Minute).Unix() })),
			txn.ErrLifetime, fmt.Sprintf("txn: token lifetime too long: exp %s is 11m0s after iat %s (at most 10m0s)", utc(now.Add(11*time.Minute)), utc(now))},
		{"exp-before-iat", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(4*time.Second).Unix(), now.Add(2*time.Second).Unix()
		})), txn.ErrMalformed, fmt.Sprintf("txn: malformed token: exp %s is before iat %s", utc(now.Add(2*time.Second)), utc(now.Add(4*time.Second)))},
		{"re-signed-by-non-minter", sign(t, m.orders.PrivateKey, jose.ES256, goodHeader(m.orders), claims(func(c map[string]any) {
			c["iss"], c["req_wl"] = ordersID, ordersID
		})), txn.ErrNotMinter, "txn: signer not a minter: " + ordersID + " may not mint transaction tokens"},
		{"x5c-leaf-is-not-iss", sign(t, m.orders.PrivateKey, jose.ES256, goodHeader(m.orders), goodClaims(now)), txn.ErrNotMinter,
			`txn: signer not a minter: iss "` + gatewayID + `" is not the signer ` + ordersID},
		{"x5c-leaf-is-not-req_wl", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["req_wl"] = ordersID })), txn.ErrNotMinter,
			`txn: signer not a minter: req_wl "` + ordersID + `" is not the signer ` + gatewayID},
		{"req_wl-array", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["req_wl"] = []string{gatewayID} })), txn.ErrMalformed,
			"txn: malformed token: claims: json: cannot unmarshal array into Go *"},
		{"x5c-leaf-with-other-key", sign(t, m.orders.PrivateKey, jose.ES256, gwHeader, goodClaims(now)), txn.ErrSignature,
			"txn: bad signature: signature does not verify with the key" + signedBy},
		{"re-signed-outside-the-bundle", sign(t, outsider.PrivateKey, jose.ES256, goodHeader(outsider), goodClaims(now)), txn.ErrUntrusted,
			`txn: signer not trusted: x5c chain: identity: client certificate "` + gatewayID + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority*`},
		{"signer-certificate-expired", sign(t, expiredKey, jose.ES256, expiredHeader, goodClaims(now)), txn.ErrUntrusted,
			`txn: signer not trusted: x5c chain: identity: client certificate "spiffe://shop.example/test/leaf": x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid:*`},
		{"no-x5c", sign(t, gwKey, jose.ES256, map[string]any{"typ": txn.TokenType}, goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: no x5c header (the signer's certificate chain)"},
		{"x5c-not-base64", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["x5c"] = []string{"%%%"} }), goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: x5c certificate 0 is not base64: illegal base64 data at input byte 0"},
		{"x5c-not-a-certificate", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["x5c"] = []string{b64([]byte("nope"))} }), goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: x5c certificate 0: x509: malformed certificate"},
		{"x5c-url-safe-base64", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["x5c"] = []string{"-_-_"} }), goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: x5c certificate 0 is not base64: illegal base64 data at input byte 0"},
		{"wrong-typ", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["typ"] = "at+jwt" }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: typ "at+jwt" (want "txntoken+jwt")`},
		{"typ-other-case", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["typ"] = "TXNTOKEN+JWT" }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: typ "TXNTOKEN+JWT" (want "txntoken+jwt")`},
		{"typ-media-type", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["typ"] = "application/txntoken+jwt" }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: typ "application/txntoken+jwt" (want "txntoken+jwt")`},
		{"typ-not-a-string", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["typ"] = 7 }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: typ 7 is not a string (want "txntoken+jwt")`},
		{"no-typ", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { delete(h, "typ") }), goodClaims(now)), txn.ErrType,
			`txn: not a transaction token: no typ header (want "txntoken+jwt")`},
		{"crit-header", sign(t, gwKey, jose.ES256, header(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), goodClaims(now)), txn.ErrMalformed,
			"txn: malformed token: crit header: no JWS extension is understood"},
		{"wrong-aud", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["aud"] = "spiffe://other.example" })), txn.ErrAudience,
			`txn: wrong audience: token is for "spiffe://other.example", not "spiffe://shop.example"`},
		{"aud-bare-trust-domain", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["aud"] = "shop.example" })), txn.ErrAudience,
			`txn: wrong audience: token is for "shop.example", not "spiffe://shop.example"`},
		{"no-aud", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "aud") })), txn.ErrAudience,
			`txn: wrong audience: no aud claim (want "spiffe://shop.example")`},
		{"alg-none", unsigned(t, map[string]any{"alg": "none", "typ": txn.TokenType, "x5c": gwHeader["x5c"]}, goodClaims(now)), txn.ErrAlgorithm,
			`txn: signature algorithm not accepted: alg "none" (want ES256, EdDSA or RS256)`},
		{"hs256", sign(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, gwHeader, goodClaims(now)), txn.ErrAlgorithm,
			`txn: signature algorithm not accepted: alg "HS256" (want ES256, EdDSA or RS256)`},
		{"hs256-keyed-with-the-certificate", sign(t, m.gateway.Certificates[0].Raw, jose.HS256, gwHeader, goodClaims(now)), txn.ErrAlgorithm,
			`txn: signature algorithm not accepted: alg "HS256" (want ES256, EdDSA or RS256)`},
		{"es384", sign(t, p384.PrivateKey, jose.ES384, goodHeader(p384), goodClaims(now)), txn.ErrAlgorithm,
			`txn: signature algorithm not accepted: alg "ES384" (want ES256, EdDSA or RS256)`},
		{"ps256", sign(t, rsaKey(t, 2048), jose.PS256, gwHeader, goodClaims(now)), txn.ErrAlgorithm,
			`txn: signature algorithm not accepted: alg "PS256" (want ES256, EdDSA or RS256)`},
		{"alg-does-not-fit-key", replaceHeader(t, edToken, func(h map[string]any) { h["alg"] = "ES256" }), txn.ErrAlgorithm,
			"txn: signature algorithm not accepted: alg ES256 does not fit the Ed25519 key of signer " + gatewayID + " (want EdDSA)"},
		{"signer-key-p384", replaceHeader(t, sign(t, p384.PrivateKey, jose.ES384, goodHeader(p384), goodClaims(now)), func(h map[string]any) { h["alg"] = "ES256" }),
			txn.ErrAlgorithm, "txn: signature algorithm not accepted: signer " + gatewayID + " has an ECDSA P-384 key (want P-256, for ES256)"},
		{"signer-key-rsa-1024", replaceHeader(t, sign(t, rsa1024.PrivateKey, jose.PS256, goodHeader(rsa1024), goodClaims(now)), func(h map[string]any) { h["alg"] = "RS256" }),
			txn.ErrAlgorithm, "txn: signature algorithm not accepted: signer " + gatewayID + " has an RSA key of 1024 bits (want at least 2048, for RS256)"},
		{"missing-sub", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "sub") })), txn.ErrMalformed,
			"txn: malformed token: no sub claim"},
		{"sub-not-a-spiffe-id", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["sub"] = "alice" })), txn.ErrMalformed,
			`txn: malformed token: sub "alice" is not a SPIFFE ID: scheme is missing or invalid`},
		{"sub-uppercase-scheme", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["sub"] = "SPIFFE://shop.example/user/alice" })), txn.ErrMalformed,
			`txn: malformed token: sub "SPIFFE://shop.example/user/alice" is not a SPIFFE ID: scheme is missing or invalid`},
		{"missing-txn", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "txn") })), txn.ErrMalformed,
			"txn: malformed token: no txn claim"},
		{"missing-scope", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "scope") })), txn.ErrMalformed,
			"txn: malformed token: no scope claim"},
		{"missing-iat", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "iat") })), txn.ErrMalformed,
			"txn: malformed token: no iat claim"},
		{"missing-exp", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "exp") })), txn.ErrMalformed,
			"txn: malformed token: no exp claim"},
		{"missing-iss", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { delete(c, "iss") })), txn.ErrNotMinter,
			`txn: signer not a minter: iss "" is not the signer ` + gatewayID},
		{"tctx-method-not-a-string", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["tctx"] = map[string]any{"method": 1} })), txn.ErrMalformed,
			"txn: malformed token: claims: json: cannot unmarshal number into Go *"},
		{"rctx-req_ip-not-an-address", sign(t, gwKey, jose.ES256, gwHeader, claims(func(c map[string]any) { c["rctx"] = map[string]any{"req_ip": "somewhere"} })), txn.ErrMalformed,
			`txn: malformed token: rctx req_ip "somewhere" is not an IP address`},
		{"claims-not-json", replaceClaimsRaw(good, "bm90IGpzb24"), txn.ErrSignature,
			"txn: bad signature: signature does not verify with the key" + signedBy},
		// The signature is checked directly, not by go-jose: each
		// algorithm's forged and short signatures.
		{"eddsa-forged-signature", flipSignature(edToken), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"rs256-forged-signature", flipSignature(rsaToken), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"es256-short-signature", shortSignature(t, good), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"eddsa-short-signature", shortSignature(t, edToken), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
		{"rs256-short-signature", shortSignature(t, rsaToken), txn.ErrSignature, "txn: bad signature: signature does not verify with the key" + signedBy},
	}
	v := m.verifier(t)
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := v.Verify(tc.raw, now)
			if err == nil {
				t.Fatalf("Verify accepted the token: %v", tok)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %q", err, tc.kind)
			}
			for _, other := range sentinels {
				if other != tc.kind && errors.Is(err, other) {
					t.Errorf("error %q is also %q", err, other)
				}
			}
			if prefix, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error = %q\n want prefix %q", err, prefix)
				}
			} else if err.Error() != tc.want {
				t.Errorf("error = %q\n      want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
	// The same checks pass a good token of the same signers.
	if _, err := v.Verify(good, now); err != nil {
		t.Errorf("Verify of the good token: %v", err)
	}
	if _, err := v.Verify(sign(t, gwKey, jose.ES256, gwHeader, goodClaims(now)), now); err != nil {
		t.Errorf("Verify of a good token signed by the test helper: %v", err)
	}
}

var sentinels = []error{
	txn.ErrTooLarge, txn.ErrMalformed, txn.ErrType, txn.ErrAlgorithm, txn.ErrUntrusted, txn.ErrSignature,
	txn.ErrNotMinter, txn.ErrAudience, txn.ErrExpired, txn.ErrNotYetValid, txn.ErrLifetime,
}

// TestVerifyLeeway: a token is accepted until the leeway after its exp.
func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	tok := m.mint(t)
	exp := tok.Expiry()
	for _, tc := range []struct {
		name   string
		opts   []txn.VerifierOption
		at     time.Time
		wantOK bool
	}{
		{"default-within", nil, exp.Add(5 * time.Second), true},
		{"default-past", nil, exp.Add(5*time.Second + time.Nanosecond), false},
		{"none-at-exp", []txn.VerifierOption{txn.WithLeeway(0)}, exp, true},
		{"none-past", []txn.VerifierOption{txn.WithLeeway(0)}, exp.Add(time.Nanosecond), false},
		{"max-lifetime-lower", []txn.VerifierOption{txn.WithMaxLifetime(59 * time.Second)}, m.now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := m.verifier(t, append(tc.opts, txn.WithCacheSize(0))...).Verify(tok.Raw(), tc.at)
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify at exp%+v: %v", tc.at.Sub(exp), err)
			}
		})
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	t.Parallel()
	bundle := x509bundle.New(shop)
	any := spiffeid.MatchAny()
	for _, tc := range []struct {
		name     string
		bundles  x509bundle.Source
		audience spiffeid.TrustDomain
		minters  spiffeid.Matcher
		opts     []txn.VerifierOption
		want     string
	}{
		{"no-bundles", nil, shop, any, nil, "txn: verifier needs a trust bundle source"},
		{"no-audience", bundle, spiffeid.TrustDomain{}, any, nil, "txn: verifier needs an audience (the trust domain tokens must be for)"},
		{"no-minters", bundle, shop, nil, nil, "txn: verifier needs the allowed minters (e.g. spiffeid.MatchOneOf(...))"},
		{"negative-leeway", bundle, shop, any, []txn.VerifierOption{txn.WithLeeway(-time.Second)}, "txn: verifier: leeway -1s must be from 0 to 1m0s"},
		{"long-leeway", bundle, shop, any, []txn.VerifierOption{txn.WithLeeway(2 * time.Minute)}, "txn: verifier: leeway 2m0s must be from 0 to 1m0s"},
		{"long-lifetime", bundle, shop, any, []txn.VerifierOption{txn.WithMaxLifetime(time.Hour)}, "txn: verifier: maximum lifetime 1h0m0s must be more than 0 and at most 10m0s"},
		{"negative-cache", bundle, shop, any, []txn.VerifierOption{txn.WithCacheSize(-1)}, "txn: verifier: cache size -1 must not be negative"},
		{"nil-option", bundle, shop, any, []txn.VerifierOption{nil}, "txn: verifier: nil option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := txn.NewVerifier(tc.bundles, tc.audience, tc.minters, tc.opts...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewVerifier = %v, %v; want error %q", v, err, tc.want)
			}
		})
	}
}

// TestVerifyFederatedMinter: a minter of another trust domain verifies
// against that domain's bundle when the verifier's source has it and the
// minters allow it; the audience is still this trust domain.
func TestVerifyFederatedMinter(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	partner := testpki.New(t, "partner.example")
	partnerGW := partner.SVID(t, "spiffe://partner.example/ns/shop/sa/gateway")
	c := goodClaims(m.now)
	c["iss"], c["req_wl"] = partnerGW.ID.String(), partnerGW.ID.String()
	raw := sign(t, partnerGW.PrivateKey, jose.ES256, goodHeader(partnerGW), c)
	set := x509bundle.NewSet(m.pki.Bundle(), partner.Bundle())
	v, err := txn.NewVerifier(set, shop, spiffeid.MatchOneOf(gateway, partnerGW.ID))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Verify(raw, m.now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if tok.Minter() != partnerGW.ID {
		t.Errorf("minter = %s", tok.Minter())
	}
	// With only our bundle, the partner's chain does not verify.
	v, _ = txn.NewVerifier(m.pki.Bundle(), shop, spiffeid.MatchOneOf(gateway, partnerGW.ID))
	if _, err := v.Verify(raw, m.now); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("Verify without the partner's bundle: %v", err)
	}
}

func b64(der []byte) string { return base64Std(der) }

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// flipSignature changes one bit of the signature of a compact token.
func flipSignature(raw string) string {
	i := strings.LastIndex(raw, ".") + 2
	c := raw[i]
	if c == 'A' {
		c = 'B'
	} else {
		c = 'A'
	}
	return raw[:i] + string(c) + raw[i+1:]
}

// shortSignature drops the last byte of the signature of a compact token.
func shortSignature(t *testing.T, raw string) string {
	t.Helper()
	i := strings.LastIndex(raw, ".")
	sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return raw[:i+1] + base64.RawURLEncoding.EncodeToString(sig[:len(sig)-1])
}

// replaceClaimsRaw replaces the encoded claims of a compact token.
func replaceClaimsRaw(raw, claims string) string {
	parts := strings.Split(raw, ".")
	parts[1] = claims
	return strings.Join(parts, ".")
}
