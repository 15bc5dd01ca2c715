package josekey_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/trustmesh/trustmesh/internal/josekey"
)

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func rsaKey(t *testing.T, bits int) *rsa.PublicKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func TestAlg(t *testing.T) {
	t.Parallel()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name    string
		key     crypto.PublicKey
		alg     jose.SignatureAlgorithm
		reason  josekey.Reason
		kind    string
		curve   string
		bits    int
		algKind string
	}{
		{"ECDSA P-256", ecKey(t, elliptic.P256()), jose.ES256, josekey.Fits, "ECDSA P-256", "P-256", 0, "ECDSA P-256"},
		{"ECDSA P-384", ecKey(t, elliptic.P384()), "", josekey.NotP256, "ECDSA P-384", "P-384", 0, ""},
		{"ECDSA without a curve", &ecdsa.PublicKey{}, "", josekey.NotP256, "ECDSA (no curve)", "", 0, ""},
		{"Ed25519", edPub, jose.EdDSA, josekey.Fits, "Ed25519", "", 0, "Ed25519"},
		{"RSA 2048", rsaKey(t, 2048), jose.RS256, josekey.Fits, "RSA 2048-bit", "", 2048, "RSA"},
		{"RSA 1024", rsaKey(t, 1024), "", josekey.ShortRSA, "RSA 1024-bit", "", 1024, ""},
		{"RSA without a modulus", &rsa.PublicKey{}, "", josekey.NoModulus, "RSA (no modulus)", "", 0, ""},
		{"RSA of 2047 bits", &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 2046), E: 65537}, "", josekey.ShortRSA, "RSA 2047-bit", "", 2047, ""},
		{"a private key", &ecdsa.PrivateKey{}, "", josekey.OtherKind, "*ecdsa.PrivateKey", "", 0, ""},
		{"nil", nil, "", josekey.OtherKind, "<nil>", "", 0, ""},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			alg, reason := josekey.Alg(tc.key)
			if alg != tc.alg || reason != tc.reason {
				t.Errorf("Alg = %q, %d; want %q, %d", alg, reason, tc.alg, tc.reason)
			}
			if got := josekey.Kind(tc.key); got != tc.kind {
				t.Errorf("Kind = %q, want %q", got, tc.kind)
			}
			if got := josekey.CurveName(tc.key); got != tc.curve {
				t.Errorf("CurveName = %q, want %q", got, tc.curve)
			}
			if got := josekey.RSABits(tc.key); got != tc.bits {
				t.Errorf("RSABits = %d, want %d", got, tc.bits)
			}
			if got := josekey.AlgKind(alg); got != tc.algKind {
				t.Errorf("AlgKind(%q) = %q, want %q", alg, got, tc.algKind)
			}
		})
	}
}

func TestAlgKindOthers(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{"", "none", jose.HS256, jose.ES384, jose.PS256} {
		if got := josekey.AlgKind(alg); got != "" {
			t.Errorf("AlgKind(%q) = %q, want \"\"", alg, got)
		}
	}
}

// TestID: the kid is RFC 7638's thumbprint, computed here by hand from
// the required members in lexicographic order.
func TestID(t *testing.T) {
	t.Parallel()
	key := ecKey(t, elliptic.P256())
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	point, err := key.Bytes() // 0x04, then x and y, 32 bytes each
	if err != nil {
		t.Fatal(err)
	}
	members, err := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}{"P-256", "EC", b64(point[1:33]), b64(point[33:])})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(members)
	got, err := josekey.ID(key)
	if err != nil || got != b64(sum[:]) {
		t.Errorf("ID = %q, %v; want %q", got, err, b64(sum[:]))
	}
	// RFC 7638 section 3.1's example RSA key and its thumbprint.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	rfc := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got, err := josekey.ID(rfc); err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("ID(RFC 7638 example) = %q, %v", got, err)
	}
	if _, err := josekey.ID("not a key"); err == nil {
		t.Error("ID of a string: no error")
	}
}

func TestMessage(t *testing.T) {
	t.Parallel()
	testCases := []struct{ err, want string }{
		{"go-jose/go-jose: compact JWS format must have three parts", "compact JWS format must have three parts"},
		{"go-jose/go-jose/jwt: validation failed, token is expired (exp)", "validation failed, token is expired (exp)"},
		{"square/go-jose: error in cryptographic primitive", "error in cryptographic primitive"},
		{"something else", "something else"},
		{"go-jose/go-jose: ", "go-jose/go-jose: "},
		{"x go-jose/go-jose: y", "x go-jose/go-jose: y"},
	}
	for _, tc := range testCases {
		if got := josekey.Message(errors.New(tc.err)); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// A real go-jose error.
	_, err := jwt.ParseSigned("a.b", []jose.SignatureAlgorithm{jose.ES256})
	if err == nil {
		t.Fatal("ParseSigned of a two-part token: no error")
	}
	if got := josekey.Message(err); got == err.Error() || got == "" {
		t.Errorf("Message(%q) = %q: prefix not stripped", err, got)
	}
}
