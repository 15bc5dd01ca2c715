package txn_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/txn"
)

// TestMintVerifyRoundTrip mints a token with an SVID of each key type and
// verifies it: the header and the claims are the draft's, and what the
// verifier returns is what was minted.
func TestMintVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	testCases := []struct {
		name string
		svid func(t *testing.T) *x509svid.SVID
		alg  string
	}{
		{"ecdsa-p256", func(t *testing.T) *x509svid.SVID { return m.pki.SVID(t, gatewayID) }, "ES256"},
		{"ed25519", func(t *testing.T) *x509svid.SVID { return svidWithKey(t, m.pki, gatewayID, ed25519Key(t)) }, "EdDSA"},
		{"rsa-2048", func(t *testing.T) *x509svid.SVID { return svidWithKey(t, m.pki, gatewayID, rsaKey(t, 2048)) }, "RS256"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svid := tc.svid(t)
			minted, err := m.minter(t, svid).Mint(context.Background(), txn.Request{
				Subject:  alice,
				Method:   method,
				ClientIP: netip.MustParseAddr("::ffff:192.0.2.7"),
				Now:      m.now,
			})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			parts := strings.Split(minted.Raw(), ".")
			if len(parts) != 3 {
				t.Fatalf("token has %d parts", len(parts))
			}
			h := decodePart(t, parts[0])
			x5c, _ := h["x5c"].([]any)
			if h["typ"] != "txntoken+jwt" || h["alg"] != tc.alg || len(x5c) != 1 || h["kid"] == "" || len(h) != 4 {
				t.Errorf("header = %v", h)
			}
			if der, _ := base64.StdEncoding.DecodeString(x5c[0].(string)); string(der) != string(svid.Certificates[0].Raw) {
				t.Error("x5c[0] is not the SVID's leaf")
			}
			c := decodePart(t, parts[1])
			want := map[string]any{
				"iss":    gatewayID,
				"req_wl": gatewayID,
				"sub":    aliceID,
				"aud":    "spiffe://shop.example",
				"iat":    float64(m.now.Unix()),
				"exp":    float64(m.now.Add(txn.DefaultLifetime).Unix()),
				"txn":    minted.ID(),
				"scope":  method,
				"tctx":   map[string]any{"method": method},
				"rctx":   map[string]any{"req_ip": "192.0.2.7"},
			}
			if len(c) != len(want) {
				t.Errorf("claims = %v, want %v", c, want)
			}
			for k, w := range want {
				if got := c[k]; !equalJSON(got, w) {
					t.Errorf("claim %s = %v, want %v", k, got, w)
				}
			}
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(minted.ID()) {
				t.Errorf("txn %q is not 128 bits of hex", minted.ID())
			}

			got, err := m.verifier(t).Verify(minted.Raw(), m.now.Add(30*time.Second))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			for _, tok := range []*txn.Token{minted, got} {
				switch {
				case tok.Subject() != alice, tok.Minter() != gateway, tok.ID() != minted.ID(),
					tok.Method() != method, tok.Scope() != method, tok.ClientIP() != netip.MustParseAddr("192.0.2.7"),
					!tok.IssuedAt().Equal(m.now), !tok.Expiry().Equal(m.now.Add(time.Minute)),
					tok.Raw() != minted.Raw(), tok.Digest() != minted.Digest():
					t.Errorf("token = %v (iat %s, exp %s, scope %q, ip %s)", tok, tok.IssuedAt(), tok.Expiry(), tok.Scope(), tok.ClientIP())
				}
			}
		})
	}
}

func equalJSON(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		if len(am) != len(bm) {
			return false
		}
		for k := range am {
			if !equalJSON(am[k], bm[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// TestMintTransactionIDIsTraceID: with a span in the context, txn is its
// trace id, so the token and the trace name the transaction alike.
func TestMintTransactionIDIsTraceID(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID}))
	tok, err := m.minter(t, m.gateway).Mint(ctx, txn.Request{Subject: alice, Method: method})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("txn = %q, want the trace id", tok.ID())
	}
	// Two calls without a span are two transactions.
	a, _ := m.minter(t, m.gateway).Mint(context.Background(), txn.Request{Subject: alice, Method: method})
	b, _ := m.minter(t, m.gateway).Mint(context.Background(), txn.Request{Subject: alice, Method: method})
	if a.ID() == b.ID() {
		t.Errorf("two tokens share txn %q", a.ID())
	}
}

// TestMintLifetime: exp is iat plus the lifetime, but never past the
// call's deadline nor the SVID's expiry.
func TestMintLifetime(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	now := time.Now().Truncate(time.Second)
	shortSVID := m.pki.SVID(t, gatewayID, testpki.WithTTL(2*time.Minute), testpki.WithNow(now))
	testCases := []struct {
		name     string
		svid     *x509svid.SVID
		opts     []txn.MinterOption
		deadline time.Duration // 0: none
		want     time.Time
	}{
		{"default", m.gateway, nil, 0, now.Add(60 * time.Second)},
		{"configured", m.gateway, []txn.MinterOption{txn.WithLifetime(5 * time.Minute)}, 0, now.Add(5 * time.Minute)},
		{"deadline-sooner", m.gateway, nil, 10*time.Second + 600*time.Millisecond, now.Add(10 * time.Second)},
		{"deadline-later", m.gateway, nil, time.Hour, now.Add(60 * time.Second)},
		{"svid-expires-sooner", shortSVID, []txn.MinterOption{txn.WithLifetime(10 * time.Minute)}, 0, shortSVID.Certificates[0].NotAfter},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, now.Add(tc.deadline))
				defer cancel()
			}
			tok, err := m.minter(t, tc.svid, tc.opts...).Mint(ctx, txn.Request{Subject: alice, Method: method, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if !tok.IssuedAt().Equal(now) || !tok.Expiry().Equal(tc.want) {
				t.Errorf("iat %s exp %s, want iat %s exp %s", tok.IssuedAt(), tok.Expiry(), now, tc.want)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	minter := m.minter(t, m.gateway)
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	testCases := []struct {
		name string
		ctx  context.Context
		req  txn.Request
		want string
	}{
		{"no-subject", context.Background(), txn.Request{Method: method}, "txn: mint: no subject"},
		{"no-method", context.Background(), txn.Request{Subject: alice}, "txn: mint: no method"},
		{"method-not-a-path", context.Background(), txn.Request{Subject: alice, Method: "PlaceOrder"},
			`txn: mint: method "PlaceOrder" is not a /package.Service/Method path`},
		{"method-too-long", context.Background(), txn.Request{Subject: alice, Method: "/" + strings.Repeat("m", 600)},
			"txn: mint: method of 601 bytes is longer than 512"},
		{"scope-control-character", context.Background(), txn.Request{Subject: alice, Method: method, Scope: "a\nb"},
			`txn: mint: scope "a\nb" holds a control character`},
		{"deadline-passed", expired, txn.Request{Subject: alice, Method: method}, "txn: mint: context deadline exceeded"},
		{"svid-expired", context.Background(), txn.Request{Subject: alice, Method: method, Now: m.gateway.Certificates[0].NotAfter},
			"txn: mint: own SVID " + gatewayID + " expired at " + m.gateway.Certificates[0].NotAfter.UTC().Format(time.RFC3339)},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := minter.Mint(tc.ctx, tc.req)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Mint = %v, %v; want error %q", tok, err, tc.want)
			}
		})
	}
}

func TestNewMinterRefuses(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	other := testpki.New(t, "other.example")
	mismatched := m.pki.SVID(t, gatewayID)
	mismatched = &x509svid.SVID{ID: mismatched.ID, Certificates: mismatched.Certificates, PrivateKey: ecdsaKey(t, elliptic.P256())}
	testCases := []struct {
		name     string
		svid     x509svid.Source
		audience spiffeid.TrustDomain
		opts     []txn.MinterOption
		want     string
	}{
		{"no-source", nil, shop, nil, "txn: minter needs an SVID source"},
		{"no-audience", m.gateway, spiffeid.TrustDomain{}, nil, "txn: minter needs an audience (the trust domain its tokens are for)"},
		{"zero-lifetime", m.gateway, shop, []txn.MinterOption{txn.WithLifetime(0)}, "txn: minter: lifetime 0s must be more than 0 and at most 10m0s"},
		{"long-lifetime", m.gateway, shop, []txn.MinterOption{txn.WithLifetime(time.Hour)}, "txn: minter: lifetime 1h0m0s must be more than 0 and at most 10m0s"},
		{"nil-option", m.gateway, shop, []txn.MinterOption{nil}, "txn: minter: nil option"},
		{"other-trust-domain", other.SVID(t, "spiffe://other.example/ns/shop/sa/gateway"), shop, nil,
			"txn: minter: SVID spiffe://other.example/ns/shop/sa/gateway is not in trust domain shop.example, which the tokens are for"},
		{"p384-key", svidWithKey(t, m.pki, gatewayID, ecdsaKey(t, elliptic.P384())), shop, nil,
			"txn: minter: own SVID " + gatewayID + " cannot sign transaction tokens: ECDSA P-384 key (want P-256, for ES256)"},
		{"rsa-1024-key", svidWithKey(t, m.pki, gatewayID, rsaKey(t, 1024)), shop, nil,
			"txn: minter: own SVID " + gatewayID + " cannot sign transaction tokens: RSA key of 1024 bits (want at least 2048, for RS256)"},
		{"key-does-not-match", mismatched, shop, nil,
			"txn: minter: own SVID " + gatewayID + ": private key does not match its certificate"},
		{"no-private-key", &x509svid.SVID{ID: gateway, Certificates: m.gateway.Certificates}, shop, nil,
			"txn: minter: own SVID " + gatewayID + " has no private key"},
		{"no-certificate", &x509svid.SVID{ID: gateway}, shop, nil, "txn: minter: own SVID has no certificate"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			minter, err := txn.NewMinter(tc.svid, tc.audience, tc.opts...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewMinter = %v, %v; want error %q", minter, err, tc.want)
			}
		})
	}
}

// TestMintFollowsRotation: the minter signs with whatever SVID its source
// holds, and a rotation to a key it cannot sign with fails the Mint, not
// silently the old key.
func TestMintFollowsRotation(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	src := &rotating{}
	src.svid.Store(m.gateway)
	minter := m.minter(t, src)
	v := m.verifier(t)
	leafOf := func(tok *txn.Token) *x509.Certificate {
		der, _ := base64.StdEncoding.DecodeString(decodePart(t, strings.Split(tok.Raw(), ".")[0])["x5c"].([]any)[0].(string))
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	first, err := minter.Mint(context.Background(), txn.Request{Subject: alice, Method: method})
	if err != nil {
		t.Fatal(err)
	}
	rotated := svidWithKey(t, m.pki, gatewayID, ed25519Key(t))
	src.svid.Store(rotated)
	second, err := minter.Mint(context.Background(), txn.Request{Subject: alice, Method: method})
	if err != nil {
		t.Fatal(err)
	}
	if !leafOf(first).Equal(m.gateway.Certificates[0]) || !leafOf(second).Equal(rotated.Certificates[0]) {
		t.Error("the tokens do not carry the SVID current when they were minted")
	}
	for _, tok := range []*txn.Token{first, second} {
		if _, err := v.Verify(tok.Raw(), time.Time{}); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	src.svid.Store(svidWithKey(t, m.pki, gatewayID, ecdsaKey(t, elliptic.P384())))
	if tok, err := minter.Mint(context.Background(), txn.Request{Subject: alice, Method: method}); err == nil ||
		err.Error() != "txn: mint: own SVID "+gatewayID+" cannot sign transaction tokens: ECDSA P-384 key (want P-256, for ES256)" {
		t.Errorf("Mint after rotating to a P-384 key = %v, %v", tok, err)
	}
}

// TestMintOpaqueSigner: a private key that is only a crypto.Signer (an
// HSM's) signs too.
func TestMintOpaqueSigner(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	svid := &x509svid.SVID{ID: m.gateway.ID, Certificates: m.gateway.Certificates, PrivateKey: opaque{m.gateway.PrivateKey}}
	tok, err := m.minter(t, svid).Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: m.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.verifier(t).Verify(tok.Raw(), m.now); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// opaque hides the type of a key behind crypto.Signer.
type opaque struct{ crypto.Signer }
