package tokens_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/trustmesh/trustmesh/tokens"
)

const (
	audience = "spiffe://shop.example/ns/shop/sa/gateway"
	aliceID  = "spiffe://shop.example/user/alice"
	bobID    = "spiffe://shop.example/user/bob"
)

// now is the fixed time of the tests.
var now = time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)

// newLeaf returns a self-signed certificate for the SPIFFE ID id, or with
// no URI SAN when id is "" (the verifier does not look at the chain, only at
// the certificate's bytes and its SPIFFE ID).
func newLeaf(t testing.TB, id string) *x509.Certificate {
	t.Helper()
	cert, err := makeLeaf(id)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func makeLeaf(id string) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var uris []*url.URL
	if id != "" {
		u, err := url.Parse(id)
		if err != nil {
			return nil, err
		}
		uris = append(uris, u)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		URIs:         uris,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// devKey writes a development issuer key to a new directory.
func devKey(t testing.TB) tokens.DevKey {
	t.Helper()
	k, err := tokens.InitDev(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newVerifier(t testing.TB, cfg tokens.Config) *tokens.Verifier {
	t.Helper()
	v, err := tokens.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newIssuer(t testing.TB, keyFile string) *tokens.Issuer {
	t.Helper()
	iss, err := tokens.NewIssuer(tokens.DevIssuer, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// sign signs c with key and alg, naming the key kid, with the typ header
// of an access token (at+jwt): tokens no Issuer would make.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c tokens.Claims) string {
	t.Helper()
	return signTyp(t, alg, key, kid, tokens.TokenType, c)
}

// signTyp is sign with the typ header typ (a string or any other JSON
// value), or none when typ is nil.
func signTyp(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, typ any, c tokens.Claims) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts.WithHeader("kid", kid)
	}
	if typ != nil {
		opts.WithHeader(jose.HeaderType, typ)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(wire(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func wire(c tokens.Claims) map[string]any {
	m := map[string]any{"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience}
	if !c.Expiry.IsZero() {
		m["exp"] = c.Expiry.Unix()
	}
	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	if !c.IssuedAt.IsZero() {
		m["iat"] = c.IssuedAt.Unix()
	}
	if c.Thumbprint != "" {
		m["cnf"] = map[string]string{"x5t#S256": c.Thumbprint}
	}
	return m
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerify(t *testing.T) {
	t.Parallel()
	key := devKey(t)
	iss := newIssuer(t, key.KeyFile)
	v := newVerifier(t, tokens.Config{Issuer: tokens.DevIssuer, Audience: audience, JWKSFile: key.JWKSFile})
	alice, bob := newLeaf(t, aliceID), newLeaf(t, bobID)
	noID := newLeaf(t, "")

	good := tokens.Claims{Subject: aliceID, Audience: []string{audience}, NotBefore: now.Add(-time.Minute), Expiry: now.Add(15 * time.Minute), Thumbprint: tokens.Thumbprint(alice)}
	signed := func(edit func(*tokens.Claims)) string {
		c := good
		edit(&c)
		raw, err := iss.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	goodToken := signed(func(*tokens.Claims) {})
	parts := strings.Split(goodToken, ".")
	otherPayload := strings.Split(signed(func(c *tokens.Claims) { c.Subject = "spiffe://shop.example/user/admin" }), ".")[1]

	// The JWKS the gateway publishes, used as an HMAC secret: the classic
	// algorithm confusion attack.
	jwks, err := os.ReadFile(key.JWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	goodWire := good
	goodWire.Issuer = tokens.DevIssuer
	issuerKey := readKey(t, key.KeyFile)

	testCases := []struct {
		name  string
		token string
		leaf  *x509.Certificate
		want  string // the error, or "" when the token is accepted
	}{
		{"good", goodToken, alice, ""},
		{"missing", "", alice, "tokens: no token"},
		{"expired", signed(func(c *tokens.Claims) { c.Expiry = now.Add(-time.Second) }), alice, "tokens: token expired at 2030-06-01T09:59:59Z"},
		{"expires now", signed(func(c *tokens.Claims) { c.Expiry = now }), alice, ""},
		{"not yet valid", signed(func(c *tokens.Claims) { c.NotBefore = now.Add(time.Minute) }), alice, "tokens: token is not valid before 2030-06-01T10:01:00Z"},
		{"no expiry", signed(func(c *tokens.Claims) { c.Expiry = time.Time{} }), alice, "tokens: token has no expiry (exp)"},
		{"wrong audience", signed(func(c *tokens.Claims) { c.Audience = []string{"spiffe://shop.example/ns/shop/sa/orders"} }), alice,
			`tokens: token is for audience "spiffe://shop.example/ns/shop/sa/orders", not "spiffe://shop.example/ns/shop/sa/gateway"`},
		{"one of several audiences", signed(func(c *tokens.Claims) { c.Audience = []string{"other", audience} }), alice, ""},
		{"no audience", signed(func(c *tokens.Claims) { c.Audience = nil }), alice, "tokens: token has no audience (aud)"},
		{"wrong issuer", signed(func(c *tokens.Claims) { c.Issuer = "https://evil.example" }), alice, `tokens: token is from issuer "https://evil.example", not "trustmesh-dev"`},
		{"bad signature", parts[0] + "." + otherPayload + "." + parts[2], alice, "tokens: bad signature"},
		{"signed by another key under the issuer's kid", sign(t, jose.ES256, forger, iss.KeyID(), goodWire), alice, "tokens: bad signature"},
		{"signed by an unknown key", sign(t, jose.ES256, forger, "forger", goodWire), alice, `tokens: no issuer key with kid "forger"`},
		// A long kid is cut to 64 bytes for the error, before the rune
		// that crosses the limit, not in the middle of it.
		{"unknown kid cut on a rune boundary", sign(t, jose.ES256, forger, strings.Repeat("k", 63)+"ékid", goodWire), alice,
			`tokens: no issuer key with kid "` + strings.Repeat("k", 63) + `..."`},
		{"no kid, one key", sign(t, jose.ES256, forger, "", goodWire), alice, "tokens: bad signature"},
		{"bound to another certificate", goodToken, bob, "tokens: token is bound to another certificate"},
		// A token for bob bound to alice's certificate is no token for alice.
		{"minted for bob, bound to alice's certificate", signed(func(c *tokens.Claims) { c.Subject = bobID }), alice,
			`tokens: token is for subject "spiffe://shop.example/user/bob", not the certificate's "spiffe://shop.example/user/alice"`},
		{"no subject", signed(func(c *tokens.Claims) { c.Subject = "" }), alice, "tokens: token has no subject (sub)"},
		{"certificate without a SPIFFE ID", signed(func(c *tokens.Claims) { c.Thumbprint = tokens.Thumbprint(noID) }), noID,
			"tokens: client certificate has no SPIFFE ID to check the token's subject against: certificate contains no URI SAN"},
		{"issued in the future", signed(func(c *tokens.Claims) { c.IssuedAt = now.Add(time.Minute) }), alice, "tokens: token was issued in the future, at 2030-06-01T10:01:00Z"},
		{"issued now", signed(func(c *tokens.Claims) { c.IssuedAt = now }), alice, ""},
		// RFC 9068: the typ of an access token is at+jwt, compared without
		// regard to case, with or without "application/".
		{"typ JWT", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), "JWT", goodWire), alice, `tokens: token typ "JWT" is not an access token's (want "at+jwt", RFC 9068)`},
		{"no typ", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), nil, goodWire), alice, `tokens: token has no typ header (want "at+jwt", RFC 9068)`},
		{"typ application/at+jwt", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), "application/at+jwt", goodWire), alice, ""},
		{"typ in upper case", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), "Application/AT+JWT", goodWire), alice, ""},
		{"typ at+jwt in upper case", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), "AT+JWT", goodWire), alice, ""},
		{"typ not a string", signTyp(t, jose.ES256, issuerKey, iss.KeyID(), 1, goodWire), alice, `tokens: token typ 1 is not an access token's (want "at+jwt", RFC 9068)`},
		{"not bound", signed(func(c *tokens.Claims) { c.Thumbprint = "" }), alice, "tokens: token is not bound to a certificate (no cnf x5t#S256 claim)"},
		{"no certificate", goodToken, nil, "tokens: no client certificate to check the token's binding against"},
		{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".", alice, `tokens: alg "none" is not accepted (want ES256, RS256 or EdDSA)`},
		{"HS256 keyed with the public JWKS", sign(t, jose.HS256, jwks, iss.KeyID(), goodWire), alice, `tokens: alg "HS256" is not accepted (want ES256, RS256 or EdDSA)`},
		{"ES384", b64(`{"alg":"ES384"}`) + "." + parts[1] + "." + parts[2], alice, `tokens: alg "ES384" is not accepted (want ES256, RS256 or EdDSA)`},
		{"RS256 under the issuer's ES256 kid", sign(t, jose.RS256, rsaKey, iss.KeyID(), goodWire), alice,
			`tokens: alg RS256 does not fit the issuer's key "` + iss.KeyID() + `" (ECDSA P-256 key: want ES256)`},
		{"not a JWT", "hello", alice, "tokens: malformed token: compact JWS format must have three parts"},
		{"bad base64", "a.b.c", alice, "tokens: malformed token: illegal base64 data at input byte 0"},
		{"too long", strings.Repeat("a", tokens.MaxTokenSize+1), alice, "tokens: token is longer than 8192 bytes"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(tc.token, tc.leaf, now)
			if got := errString(err); got != tc.want {
				t.Fatalf("Verify error = %q\nwant %q", got, tc.want)
			}
			if err == nil && (c.Subject != aliceID || c.Thumbprint != tokens.Thumbprint(alice) || c.Issuer != tokens.DevIssuer) {
				t.Errorf("Verify claims = %+v", c)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	key := devKey(t)
	iss := newIssuer(t, key.KeyFile)
	alice := newLeaf(t, aliceID)
	v := newVerifier(t, tokens.Config{Issuer: tokens.DevIssuer, Audience: audience, JWKSFile: key.JWKSFile, Leeway: 30 * time.Second})
	for name, c := range map[string]tokens.Claims{
		"expired within the leeway":       {Subject: aliceID, Audience: []string{audience}, Expiry: now.Add(-29 * time.Second), Thumbprint: tokens.Thumbprint(alice)},
		"not yet valid within the leeway": {Subject: aliceID, Audience: []string{audience}, NotBefore: now.Add(29 * time.Second), Expiry: now.Add(time.Hour), Thumbprint: tokens.Thumbprint(alice)},
		"issued within the leeway":        {Subject: aliceID, Audience: []string{audience}, IssuedAt: now.Add(29 * time.Second), Expiry: now.Add(time.Hour), Thumbprint: tokens.Thumbprint(alice)},
	} {
		raw, err := iss.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(raw, alice, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	raw, err := iss.Sign(tokens.Claims{Subject: aliceID, Audience: []string{audience}, Expiry: now.Add(-31 * time.Second), Thumbprint: tokens.Thumbprint(alice)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, alice, now); errString(err) != "tokens: token expired at 2030-06-01T09:59:29Z" {
		t.Errorf("expired beyond the leeway: %v", err)
	}
}

// TestVerifyKeyFile: a PEM key file of RSA and Ed25519 keys, the other
// accepted algorithms.
func TestVerifyKeyFile(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	file := writePEM(t, "keys.pem", "PUBLIC KEY", rsaKey.Public(), edKey.Public())
	v := newVerifier(t, tokens.Config{Issuer: "https://issuer.example", Audience: audience, KeyFile: file})
	alice := newLeaf(t, aliceID)
	c := tokens.Claims{Issuer: "https://issuer.example", Subject: aliceID, Audience: []string{audience}, Expiry: now.Add(time.Minute), Thumbprint: tokens.Thumbprint(alice)}
	for alg, key := range map[jose.SignatureAlgorithm]crypto.Signer{jose.RS256: rsaKey, jose.EdDSA: edKey} {
		kid := thumbprint(t, key.Public())
		if _, err := v.Verify(sign(t, alg, key, kid, c), alice, now); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
		// With two keys, a token must say which one signed it.
		if _, err := v.Verify(sign(t, alg, key, "", c), alice, now); errString(err) != "tokens: token has no kid and the issuer has 2 keys" {
			t.Errorf("%s without kid: %v", alg, err)
		}
	}
}

// readKey reads the PEM PKCS#8 private key of a development issuer.
func readKey(t testing.TB, file string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return key.(crypto.Signer)
}

func thumbprint(t testing.TB, key crypto.PublicKey) string {
	t.Helper()
	sum, err := (&jose.JSONWebKey{Key: key}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

func writePEM(t testing.TB, name, typ string, keys ...any) string {
	t.Helper()
	var out []byte
	for _, k := range keys {
		var der []byte
		var err error
		if typ == "PUBLIC KEY" {
			der, err = x509.MarshalPKIXPublicKey(k)
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	return writeFile(t, name, string(out))
}

func writeFile(t testing.TB, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
