package txn_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/txn"
)

// newToken is a token the gateway mints at at: a new transaction, so the
// token cache has never seen it, but its header is the one of every token
// of the gateway's SVID.
func (m *mesh) newToken(t testing.TB, at time.Time) string {
	t.Helper()
	tok, err := m.minter(t, m.gateway).Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: at})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Raw()
}

// TestSignerCacheFollowsBundle: new tokens whose header (and so x5c chain)
// was verified before are refused once the signer's CA leaves the bundle,
// and verify again when a new bundle with the same CA comes.
func TestSignerCacheFollowsBundle(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	src := &bundleSource{}
	src.bundle.Store(m.pki.Bundle())
	v, err := txn.NewVerifier(src, shop, spiffeid.MatchOneOf(gateway))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(m.newToken(t, m.now), m.now); err != nil {
		t.Fatal(err)
	}
	src.bundle.Store(testpki.New(t, "shop.example").Bundle()) // our CA is gone
	if _, err := v.Verify(m.newToken(t, m.now), m.now); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("a new token after the CA left the bundle: %v, want %v", err, txn.ErrUntrusted)
	}
	src.bundle.Store(m.pki.Bundle())
	if _, err := v.Verify(m.newToken(t, m.now), m.now); err != nil {
		t.Errorf("a new token once the CA is back: %v", err)
	}
}

// TestSignerCacheBoundedByChain: a header verified while its certificate
// held is not trusted after the certificate expired, nor at a time before
// the one it was verified at when the certificate was not yet valid then.
func TestSignerCacheBoundedByChain(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	short := m.pki.SVID(t, gatewayID, testpki.WithNow(m.now.Add(-30*time.Second)), testpki.WithTTL(time.Minute)) // issued at now-30s for a minute: expires at now+30s
	n := 0
	tokenAt := func(at time.Time) string { // signed by hand: the minter refuses an SVID out of its validity
		n++
		c := goodClaims(at)
		c["txn"] = fmt.Sprint("txn-", n)
		return sign(t, short.PrivateKey, jose.ES256, goodHeader(short), c)
	}
	v := m.verifier(t)
	if _, err := v.Verify(tokenAt(m.now), m.now); err != nil {
		t.Fatal(err)
	}
	later := m.now.Add(31 * time.Second)
	if _, err := v.Verify(tokenAt(later), later); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("a new token after the signer's certificate expired: %v, want %v", err, txn.ErrUntrusted)
	}
	if _, err := v.Verify(tokenAt(m.now), m.now); err != nil {
		t.Fatal(err)
	}
	earlier := m.now.Add(-2 * time.Minute) // before the certificate's NotBefore (issued at now-30s, backdated a minute)
	if _, err := v.Verify(tokenAt(earlier), earlier); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("a new token at a time before the certificate was valid: %v, want %v", err, txn.ErrUntrusted)
	}
}

// TestSignerCacheChecksEverySignature: a known header does not vouch for
// the rest of a token: a forged signature or claims under it are refused.
func TestSignerCacheChecksEverySignature(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	v := m.verifier(t)
	good := m.newToken(t, m.now)
	if _, err := v.Verify(good, m.now); err != nil {
		t.Fatal(err)
	}
	forgedClaims := replaceClaims(t, m.newToken(t, m.now), func(c map[string]any) { c["sub"] = "spiffe://shop.example/user/mallory" })
	if _, err := v.Verify(forgedClaims, m.now); !errors.Is(err, txn.ErrSignature) {
		t.Errorf("forged claims under a known header: %v, want %v", err, txn.ErrSignature)
	}
	other := sign(t, m.orders.PrivateKey, jose.ES256, goodHeader(m.gateway), goodClaims(m.now)) // the gateway's header, orders' key
	if _, err := v.Verify(other, m.now); !errors.Is(err, txn.ErrSignature) {
		t.Errorf("a signature by another key under a known header: %v, want %v", err, txn.ErrSignature)
	}
}

// TestSignerCacheKeepsMintersOnly: a header whose signer may not mint is
// verified (and refused) without taking a slot, so that the workloads of
// the trust domain cannot evict the minters' headers; a minter's is kept.
func TestSignerCacheKeepsMintersOnly(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	v := m.verifier(t)
	byOrders := sign(t, m.orders.PrivateKey, jose.ES256, goodHeader(m.orders), goodClaims(m.now))
	if _, err := v.Verify(byOrders, m.now); !errors.Is(err, txn.ErrNotMinter) {
		t.Fatalf("a token of orders: %v, want %v", err, txn.ErrNotMinter)
	}
	if n := v.CachedSigners(); n != 0 {
		t.Fatalf("after a non-minter's token the cache holds %d headers, want 0", n)
	}
	if _, err := v.Verify(m.newToken(t, m.now), m.now); err != nil {
		t.Fatal(err)
	}
	if n := v.CachedSigners(); n != 1 {
		t.Fatalf("after the gateway's token the cache holds %d headers, want 1", n)
	}
}
