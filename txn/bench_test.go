package txn_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/txn"
)

// benchSVIDs returns the gateway's SVID with each kind of key.
func benchSVIDs(b *testing.B, m *mesh) []struct {
	alg  string
	svid *x509svid.SVID
} {
	return []struct {
		alg  string
		svid *x509svid.SVID
	}{
		{"ES256", m.gateway},
		{"EdDSA", svidWithKey(b, m.pki, gatewayID, ed25519Key(b))},
		{"RS256", svidWithKey(b, m.pki, gatewayID, rsaKey(b, 2048))},
	}
}

// BenchmarkMint mints one token per op at the edge, as for each call that
// enters the mesh.
func BenchmarkMint(b *testing.B) {
	m := newMesh(b)
	for _, k := range benchSVIDs(b, m) {
		b.Run("alg="+k.alg, func(b *testing.B) {
			minter := m.minter(b, k.svid)
			req := txn.Request{Subject: alice, Method: method}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := minter.Mint(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify verifies a token: cold (no cache: the first hop that
// sees a token, x5c chain and signature), new (a token of a new
// transaction from a minter seen before: the x5c chain is known, the
// signature and claims are checked) and cached (every later call with the
// same token: a SHA-256 of the token and a lookup).
func BenchmarkVerify(b *testing.B) {
	m := newMesh(b)
	for _, k := range benchSVIDs(b, m) {
		tok, err := m.minter(b, k.svid).Mint(context.Background(), txn.Request{Subject: alice, Method: method})
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name string
			opts []txn.VerifierOption
		}{
			{"cold", []txn.VerifierOption{txn.WithCacheSize(0)}},
			{"cached", nil},
		} {
			if mode.name == "cached" {
				b.Run("cache=new/alg="+k.alg, func(b *testing.B) { benchNewTokens(b, m, k.svid) })
			}
			b.Run("cache="+mode.name+"/alg="+k.alg, func(b *testing.B) {
				v := m.verifier(b, mode.opts...)
				now := time.Now()
				if _, err := v.Verify(tok.Raw(), now); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(tok.Raw(), now); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(tok.Raw())), "token-bytes")
			})
		}
	}
}

// benchNewTokens verifies a new token per op with a verifier that has seen
// the minter's header before: what the next hops of each transaction do.
func benchNewTokens(b *testing.B, m *mesh, svid *x509svid.SVID) {
	minter := m.minter(b, svid)
	const n = 1000
	toks := make([]string, n+1)
	for i := range toks {
		tok, err := minter.Mint(context.Background(), txn.Request{Subject: alice, Method: method})
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = tok.Raw()
	}
	now := time.Now()
	var v *txn.Verifier
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i%n == 0 { // a fresh token cache every n tokens, its signer warmed by another token
			v = m.verifier(b)
			if _, err := v.Verify(toks[n], now); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := v.Verify(toks[i%n], now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
