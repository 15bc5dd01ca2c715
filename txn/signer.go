package txn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"hash/maphash"
	"math/big"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// signer is what a token's JOSE header establishes, whatever its claims:
// the verified signer, its key and the algorithm that key signs with.
type signer struct {
	header string // the encoded header it was read from
	id     spiffeid.ID
	key    crypto.PublicKey
	alg    jose.SignatureAlgorithm
	bundle *x509bundle.Bundle // the bundle the chain was verified against
	from   time.Time          // the chain holds from its last NotBefore ...
	until  time.Time          // ... to its first NotAfter
}

// signerCache remembers the signers of the headers verified lately. Every
// token an edge mints with one SVID has the same header (typ, alg and the
// x5c chain), so the next hops of every transaction verify the chain once
// per SVID, not once per token: what is left per token is its signature
// and claims. It is direct-mapped by the header's hash, lock-free and
// bounded (a header it does not hold is verified as usual and replaces
// one).
type signerCache struct {
	seed  maphash.Seed
	slots [64]atomic.Pointer[signer]
}

func newSignerCache() *signerCache { return &signerCache{seed: maphash.MakeSeed()} }

func (c *signerCache) slot(header string) *atomic.Pointer[signer] {
	return &c.slots[maphash.String(c.seed, header)%uint64(len(c.slots))]
}

// signer returns the signer of raw's header, verified at now: from the
// cache when its chain, verified against the bundle still in force, still
// holds at now; else by reading and verifying the header.
func (v *Verifier) signer(raw string, now time.Time) (*signer, error) {
	header, _, _ := strings.Cut(raw, ".")
	if v.signers != nil {
		if s := v.signers.slot(header).Load(); s != nil && s.header == header && v.stillHolds(s, now) {
			return s, nil
		}
	}
	s, err := v.readSigner(raw, now)
	if err != nil {
		return nil, err
	}
	// Only a minter's header is kept: any workload of the trust domain
	// can present a token, and must not evict the minters' headers.
	if v.signers != nil && v.minters(s.id) == nil {
		s.header = strings.Clone(header)
		v.signers.slot(header).Store(s)
	}
	return s, nil
}

// stillHolds reports whether the chain behind s would verify at now as it
// did: now is within the validity of every certificate of the chain (from
// the last NotBefore to the first NotAfter) and the signer's trust domain
// has the same bundle. The bundle is compared by identity: a source hands
// out a new bundle when its contents change (x509bundle.Set and the
// Workload API sources do); one that edits a bundle in place keeps cached
// headers trusted until their chain expires.
func (v *Verifier) stillHolds(s *signer, now time.Time) bool {
	if now.Before(s.from) || now.After(s.until) {
		return false
	}
	b, err := v.bundles.GetX509BundleForTrustDomain(s.id.TrustDomain())
	return err == nil && b == s.bundle
}

// readSigner reads and checks the JOSE header of raw (typ, alg, no crit)
// and verifies its x5c chain at now.
func (v *Verifier) readSigner(raw string, now time.Time) (*signer, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	if err := checkType(h.Typ); err != nil {
		return nil, err
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	if !accepted(alg) {
		return nil, refuse(ErrAlgorithm, "alg %q (want ES256, EdDSA or RS256)", clip.String(h.Alg, maxEcho))
	}
	if h.Crit {
		return nil, refuse(ErrMalformed, "crit header: no JWS extension is understood")
	}
	chain, err := parseChain(h.X5c)
	if err != nil {
		return nil, err
	}
	// The chain is verified against one bundle, fetched first and kept
	// with the signer, so that a bundle update racing with this
	// verification makes the next use verify again rather than trust a
	// chain checked against the previous bundle.
	var src x509bundle.Source = v.bundles
	var bundle *x509bundle.Bundle
	if id, err := x509svid.IDFromCert(chain[0]); err == nil {
		if b, err := v.bundles.GetX509BundleForTrustDomain(id.TrustDomain()); err == nil {
			src, bundle = b, b
		}
	}
	// The chain is verified at now, not at the token's iat: iat is the
	// signer's word, and a key whose certificate has expired, or left the
	// bundle, must not sign for the transactions of today.
	p, verified, err := identity.VerifyChains(chain, src, identity.Client, now)
	if err != nil {
		return nil, refuse(ErrUntrusted, "x5c chain: %w", err)
	}
	leaf := p.Leaf
	want, err := algFor(leaf.PublicKey)
	if err != nil {
		return nil, refuse(ErrAlgorithm, "signer %s has an %s", p.ID, err)
	}
	if alg != want {
		return nil, refuse(ErrAlgorithm, "alg %s does not fit the %s key of signer %s (want %s)", alg, josekey.Kind(leaf.PublicKey), p.ID, want)
	}
	from, until := chainValidity(verified)
	return &signer{id: p.ID, key: leaf.PublicKey, alg: want, bundle: bundle, from: from, until: until}, nil
}

// verifySignature checks a JWS signature over input (the encoded header, a
// dot and the encoded claims) as RFC 7518 defines it for alg, with key, of
// the kind algFor gives alg: ES256 is r and s, 32 bytes each, over
// SHA-256; RS256 PKCS #1 v1.5 over SHA-256; EdDSA Ed25519.
func verifySignature(alg jose.SignatureAlgorithm, key crypto.PublicKey, input string, sig []byte) bool {
	switch alg {
	case jose.ES256:
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		h := sha256.Sum256([]byte(input))
		return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case jose.RS256:
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return false
		}
		h := sha256.Sum256([]byte(input))
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
	case jose.EdDSA:
		pub, ok := key.(ed25519.PublicKey)
		return ok && ed25519.Verify(pub, []byte(input), sig)
	}
	return false
}

// chainValidity is the time span in which every certificate of the first
// verified chain (identity.VerifyChains returns at least one) is valid.
func chainValidity(chains [][]*x509.Certificate) (from, until time.Time) {
	for _, cert := range chains[0] {
		if cert.NotBefore.After(from) {
			from = cert.NotBefore
		}
		if until.IsZero() || cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
	}
	return from, until
}
