package txn_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/txn"
)

// TestCacheHit: a token verified once is not verified again: the second
// Verify returns the very Token of the first, and costs no allocation. It
// is not parallel: AllocsPerRun refuses to run in a parallel test.
func TestCacheHit(t *testing.T) {
	m := newMesh(t)
	raw := m.mint(t).Raw()
	v := m.verifier(t)
	first, err := v.Verify(raw, m.now)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(raw, m.now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("the second Verify verified the token again")
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = v.Verify(raw, m.now) }); allocs != 0 {
		t.Errorf("a cache hit allocates %v times", allocs)
	}

	uncached := m.verifier(t, txn.WithCacheSize(0))
	a, _ := uncached.Verify(raw, m.now)
	b, _ := uncached.Verify(raw, m.now)
	if a == nil || a == b {
		t.Error("WithCacheSize(0) still caches")
	}
}

// TestCacheRefusesExpired: a cached token is refused once it expires, with
// the error a fresh verification gives.
func TestCacheRefusesExpired(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	tok := m.mint(t)
	v := m.verifier(t)
	if _, err := v.Verify(tok.Raw(), m.now); err != nil {
		t.Fatal(err)
	}
	late := tok.Expiry().Add(txn.DefaultLeeway + time.Second)
	_, err := v.Verify(tok.Raw(), late)
	want := fmt.Sprintf("txn: token expired: exp %s is more than 5s before %s", utc(tok.Expiry()), utc(late))
	if !errors.Is(err, txn.ErrExpired) || err.Error() != want {
		t.Errorf("Verify of the cached token after expiry = %v, want %q", err, want)
	}
	// An earlier time is still within the token's life: refusing once did
	// not poison anything.
	if _, err := v.Verify(tok.Raw(), m.now); err != nil {
		t.Errorf("Verify within the token's life again: %v", err)
	}
}

// TestCacheBoundedBySignerCertificate: a cached entry lives no longer
// than the certificate that signed it, even when the token's exp is later.
func TestCacheBoundedBySignerCertificate(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	short := m.pki.SVID(t, gatewayID, testpki.WithNow(m.now.Add(-30*time.Second)), testpki.WithTTL(time.Minute)) // expires at now+30s
	c := goodClaims(m.now)
	c["exp"] = m.now.Add(5 * time.Minute).Unix()
	raw := sign(t, short.PrivateKey, jose.ES256, goodHeader(short), c)
	v := m.verifier(t)
	if _, err := v.Verify(raw, m.now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, m.now.Add(31*time.Second)); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("Verify after the signer's certificate expired = %v, want %v", err, txn.ErrUntrusted)
	}
}

// TestCacheFollowsMinters: the minters are asked on every Verify, so that
// a policy that stops naming a minter refuses its cached tokens.
func TestCacheFollowsMinters(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	raw := m.mint(t).Raw()
	var allowed atomic.Bool
	allowed.Store(true)
	minters := func(id spiffeid.ID) error {
		if allowed.Load() && id == gateway {
			return nil
		}
		return errors.New("not a minter")
	}
	v, err := txn.NewVerifier(m.pki.Bundle(), shop, minters)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, m.now); err != nil {
		t.Fatal(err)
	}
	allowed.Store(false)
	if _, err := v.Verify(raw, m.now); err == nil || err.Error() != "txn: signer not a minter: "+gatewayID+" may not mint transaction tokens" {
		t.Errorf("Verify of a cached token whose minter was removed = %v", err)
	}
	allowed.Store(true)
	if _, err := v.Verify(raw, m.now); err != nil {
		t.Errorf("Verify once the minter is back: %v", err)
	}
}

// TestCacheFollowsBundle: a new bundle from the source makes cached tokens
// verify again, so that a signer whose CA left the bundle is refused.
func TestCacheFollowsBundle(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	raw := m.mint(t).Raw()
	src := &bundleSource{}
	src.bundle.Store(m.pki.Bundle())
	v, err := txn.NewVerifier(src, shop, spiffeid.MatchOneOf(gateway))
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(raw, m.now)
	if err != nil {
		t.Fatal(err)
	}
	src.bundle.Store(m.pki.Bundle()) // the same CA, a new bundle
	second, err := v.Verify(raw, m.now)
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Error("a new bundle did not make the token verify again")
	}
	src.bundle.Store(testpki.New(t, "shop.example").Bundle()) // our CA is gone
	if _, err := v.Verify(raw, m.now); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("Verify after the CA left the bundle = %v, want %v", err, txn.ErrUntrusted)
	}
}

type bundleSource struct {
	bundle atomic.Pointer[x509bundle.Bundle]
}

func (s *bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.Load().GetX509BundleForTrustDomain(td)
}

// TestCacheConcurrent verifies tokens from many goroutines through a small
// cache (run it with -race): every Verify of a good token succeeds.
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	minter := m.minter(t, m.gateway)
	raws := make([]string, 8)
	for i := range raws {
		tok, err := minter.Mint(context.Background(), txn.Request{Subject: alice, Method: method, Now: m.now})
		if err != nil {
			t.Fatal(err)
		}
		raws[i] = tok.Raw()
	}
	v := m.verifier(t, txn.WithCacheSize(3))
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(raws)*10)
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 * len(raws) {
				if _, err := v.Verify(raws[(g+i)%len(raws)], m.now); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCacheBundleChangesDuringVerify: the bundle that verified a token's
// chain is the one its cache entry is tied to, even when the source hands
// out another one (without the signer's CA) a moment later, in the middle
// of the first verification.
func TestCacheBundleChangesDuringVerify(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	raw := m.mint(t).Raw()
	src := &flipSource{first: m.pki.Bundle(), then: testpki.New(t, "shop.example").Bundle()}
	v, err := txn.NewVerifier(src, shop, spiffeid.MatchOneOf(gateway))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, m.now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, m.now); !errors.Is(err, txn.ErrUntrusted) {
		t.Errorf("Verify once the CA left the bundle = %v, want %v", err, txn.ErrUntrusted)
	}
}

// flipSource hands out first on its first call, then on every later one.
type flipSource struct {
	calls       atomic.Int32
	first, then *x509bundle.Bundle
}

func (s *flipSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.calls.Add(1) == 1 {
		return s.first.GetX509BundleForTrustDomain(td)
	}
	return s.then.GetX509BundleForTrustDomain(td)
}
