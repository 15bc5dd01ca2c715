package txn_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/txn"
)

// The sample mesh's names, used throughout.
const (
	gatewayID = "spiffe://shop.example/ns/shop/sa/gateway"
	ordersID  = "spiffe://shop.example/ns/shop/sa/orders"
	aliceID   = "spiffe://shop.example/user/alice"
	method    = "/shop.gateway.v1.StorefrontService/PlaceOrder"
)

var (
	shop    = spiffeid.RequireTrustDomainFromString("shop.example")
	gateway = spiffeid.RequireFromString(gatewayID)
	alice   = spiffeid.RequireFromString(aliceID)
)

// mesh is a trust domain with a gateway (the one minter) and orders (a
// workload that is no minter), and the time the tests run at: whole
// seconds, so that iat and exp come out exactly.
type mesh struct {
	pki     *testpki.PKI
	gateway *x509svid.SVID
	orders  *x509svid.SVID
	now     time.Time
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	pki := testpki.New(t, "shop.example")
	return &mesh{
		pki:     pki,
		gateway: pki.SVID(t, gatewayID),
		orders:  pki.SVID(t, ordersID),
		now:     time.Now().Truncate(time.Second),
	}
}

func (m *mesh) minter(t testing.TB, svid x509svid.Source, opts ...txn.MinterOption) *txn.Minter {
	t.Helper()
	minter, err := txn.NewMinter(svid, shop, opts...)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return minter
}

// verifier accepts tokens of the gateway only.
func (m *mesh) verifier(t testing.TB, opts ...txn.VerifierOption) *txn.Verifier {
	t.Helper()
	v, err := txn.NewVerifier(m.pki.Bundle(), shop, spiffeid.MatchOneOf(gateway), opts...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// mint returns a token the gateway minted for alice at m.now.
func (m *mesh) mint(t testing.TB) *txn.Token {
	t.Helper()
	tok, err := m.minter(t, m.gateway).Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: m.now})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

// svidWithKey issues an SVID for id from pki whose key is key: ECDSA
// P-256 is what the CA issues, the others are built here.
func svidWithKey(t testing.TB, pki *testpki.PKI, id string, key crypto.Signer) *x509svid.SVID {
	t.Helper()
	spiffeID := spiffeid.RequireFromString(id)
	template, err := pki.CA().Template(certs.IssueRequest{ID: spiffeID})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.CA().Sign(template, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: spiffeID, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

func ed25519Key(t testing.TB) crypto.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func ecdsaKey(t testing.TB, curve elliptic.Curve) crypto.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// goodClaims are the claims of a token the gateway mints for alice at now.
func goodClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":    gatewayID,
		"req_wl": gatewayID,
		"sub":    aliceID,
		"aud":    "spiffe://shop.example",
		"iat":    now.Unix(),
		"exp":    now.Add(time.Minute).Unix(),
		"txn":    "4bf92f3577b34da6a3ce929d0e0e4736",
		"scope":  method,
		"tctx":   map[string]any{"method": method},
	}
}

// goodHeader is the header of a token signed by svid, without alg (which
// go-jose sets).
func goodHeader(svid *x509svid.SVID) map[string]any {
	x5c := make([]string, len(svid.Certificates))
	for i, c := range svid.Certificates {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return map[string]any{"typ": txn.TokenType, "x5c": x5c}
}

// sign signs claims with key and alg under header (alg is set by go-jose
// unless header names one, which replaces it after signing: the signature
// then no longer verifies, which is what a test of alg wants).
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, header, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range header {
		if k != "alg" {
			opts.WithHeader(jose.HeaderKey(k), v)
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if alg, ok := header["alg"]; ok {
		raw = replaceHeader(t, raw, func(h map[string]any) { h["alg"] = alg })
	}
	return raw
}

// replaceHeader rewrites the header of a compact token, keeping its
// payload and signature.
func replaceHeader(t testing.TB, raw string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	h := decodePart(t, parts[0])
	edit(h)
	parts[0] = encodePart(t, h)
	return strings.Join(parts, ".")
}

// replaceClaims rewrites the claims of a compact token, keeping its header
// and signature.
func replaceClaims(t testing.TB, raw string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	c := decodePart(t, parts[1])
	edit(c)
	parts[1] = encodePart(t, c)
	return strings.Join(parts, ".")
}

func decodePart(t testing.TB, part string) map[string]any {
	t.Helper()
	data, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encodePart(t testing.TB, m map[string]any) string {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// unsigned returns a token with header and claims and no signature (alg
// "none").
func unsigned(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	return encodePart(t, header) + "." + encodePart(t, claims) + "."
}

// rotating is an x509svid.Source whose SVID a test replaces.
type rotating struct{ svid atomic.Pointer[x509svid.SVID] }

func (r *rotating) GetX509SVID() (*x509svid.SVID, error) { return r.svid.Load(), nil }

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// encodeJSON returns v as JSON in base64url.
func encodeJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}
