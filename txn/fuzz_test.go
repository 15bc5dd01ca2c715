package txn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trustmesh/trustmesh/txn"
)

// FuzzVerify feeds the parser anything: it must never panic, accept only
// what the gateway signed, and refuse the rest with one bounded line that
// matches exactly one sentinel. Run it for longer with
//
//	go test -run '^$' -fuzz FuzzVerify -fuzztime 30s ./txn
func FuzzVerify(f *testing.F) {
	m := newMesh(f)
	now := m.now
	good := m.mint(f).Raw()
	ed := svidWithKey(f, m.pki, gatewayID, ed25519Key(f))
	rs := svidWithKey(f, m.pki, gatewayID, rsaKey(f, 2048))
	edTok, err := m.minter(f, ed).Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: now})
	if err != nil {
		f.Fatal(err)
	}
	rsTok, err := m.minter(f, rs).Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: now})
	if err != nil {
		f.Fatal(err)
	}
	gwHeader := goodHeader(m.gateway)
	noSub := goodClaims(now)
	delete(noSub, "sub")
	for _, seed := range []string{
		good,
		edTok.Raw(),
		rsTok.Raw(),
		"",
		".",
		"..",
		"a.b.c",
		good[:len(good)/2],
		flipSignature(good),
		replaceClaims(f, good, func(c map[string]any) { c["sub"] = "spiffe://shop.example/user/mallory" }),
		replaceHeader(f, good, func(h map[string]any) { h["typ"] = "JWT" }),
		replaceHeader(f, good, func(h map[string]any) { h["alg"] = "none" }),
		replaceHeader(f, good, func(h map[string]any) { h["x5c"] = []string{"AAAA"} }),
		replaceHeader(f, good, func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }),
		unsigned(f, map[string]any{"alg": "none", "typ": txn.TokenType, "x5c": gwHeader["x5c"]}, goodClaims(now)),
		sign(f, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, gwHeader, goodClaims(now)),
		sign(f, m.orders.PrivateKey, jose.ES256, goodHeader(m.orders), goodClaims(now)),
		sign(f, m.gateway.PrivateKey, jose.ES256, gwHeader, noSub),
		`{"payload":"e30","signatures":[]}`,
	} {
		f.Add(seed)
	}
	v := m.verifier(f, txn.WithCacheSize(64))
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(raw, now)
		if err == nil {
			if tok.Raw() != raw || tok.Subject().IsZero() || tok.Minter() != gateway || tok.ID() == "" {
				t.Fatalf("accepted %q as %v", raw, tok)
			}
			again, err := v.Verify(raw, now.Add(time.Second))
			if err != nil || again.Raw() != raw {
				t.Fatalf("accepted once, then %v", err)
			}
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "txn: ") || strings.Contains(msg, "\n") || len(msg) > 700 {
			t.Fatalf("error of %d bytes is not one bounded line starting with \"txn: \": %q", len(msg), msg)
		}
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q matches %d sentinels, want 1", msg, n)
		}
	})
}
