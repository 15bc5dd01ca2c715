package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/identity"
)

// A JWT-SVID test fixture: keys that sign tokens whose header and claims
// are written out as JSON, byte for byte, so that tests can make any token
// a validator might be sent (duplicate members, forbidden headers, ...),
// which a JOSE library would refuse to produce.

// testKey is a signing key with the kid it is published under.
type testKey struct {
	kid    string
	signer crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

// sharedRSAKey returns one RSA-2048 key for the whole test binary: RSA key
// generation is slow.
func sharedRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaKey
}

func newECKey(t *testing.T, curve elliptic.Curve, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, signer: k}
}

// bundleKey is k as a jwt-svid key of a bundle.
func (k testKey) bundleKey() identity.BundleKey {
	return identity.BundleKey{Use: identity.UseJWTSVID, KeyID: k.kid, Key: k.signer.Public()}
}

// jwk is k's public key as a JWK element of a SPIFFE bundle, with use.
func (k testKey) jwk(t *testing.T, use string) string {
	t.Helper()
	out, err := json.Marshal(jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Use: use})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// sign returns the compact JWS of header and claims (JSON, as written),
// signed by k with alg.
func (k testKey) sign(t *testing.T, alg, header, claims string) string {
	t.Helper()
	input := b64(header) + "." + b64(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(signature(t, k.signer, alg, []byte(input)))
}

func signature(t *testing.T, signer crypto.Signer, alg string, input []byte) []byte {
	t.Helper()
	var h crypto.Hash
	switch alg[2:] {
	case "256":
		h = crypto.SHA256
	case "384":
		h = crypto.SHA384
	case "512":
		h = crypto.SHA512
	default:
		t.Fatalf("fixture: no hash for alg %s", alg)
	}
	d := h.New()
	d.Write(input)
	digest := d.Sum(nil)
	switch key := signer.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, key, digest)
		if err != nil {
			t.Fatal(err)
		}
		size := (key.Curve.Params().BitSize + 7) / 8
		return append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
	case *rsa.PrivateKey:
		var sig []byte
		var err error
		if strings.HasPrefix(alg, "PS") {
			sig, err = rsa.SignPSS(rand.Reader, key, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, key, h, digest)
		}
		if err != nil {
			t.Fatal(err)
		}
		return sig
	default:
		t.Fatalf("fixture: cannot sign with %T", signer)
		return nil
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// header returns a JOSE header with alg, kid (when not empty) and typ JWT.
func header(alg, kid string) string {
	if kid == "" {
		return fmt.Sprintf(`{"alg":%q,"typ":"JWT"}`, alg)
	}
	return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"JWT"}`, alg, kid)
}

// claimsFor returns the claims of a JWT-SVID for sub and aud (a JSON
// value), issued at iat and valid for five minutes.
func claimsFor(sub, aud string, iat time.Time) string {
	return fmt.Sprintf(`{"sub":%q,"aud":%s,"exp":%d,"iat":%d}`, sub, aud, iat.Add(5*time.Minute).Unix(), iat.Unix())
}

// testCA is a CA certificate and its key, for an x509-svid bundle entry.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, td string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA " + td},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		URIs:                  []*url.URL{spiffeid.RequireTrustDomainFromString(td).ID().URL()},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key}
}

// jwk is the CA as an x509-svid JWK element, with kid when not empty.
func (ca testCA) jwk(t *testing.T, kid string) string {
	t.Helper()
	out, err := json.Marshal(jose.JSONWebKey{Key: ca.key.Public(), KeyID: kid, Use: identity.UseX509SVID, Certificates: []*x509.Certificate{ca.cert}})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func mustBundle(t *testing.T, td string, keys ...identity.BundleKey) *identity.Bundle {
	t.Helper()
	b, err := identity.NewBundle(spiffeid.RequireTrustDomainFromString(td), keys...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParseBundle(t *testing.T, td, doc string) *identity.Bundle {
	t.Helper()
	b, err := identity.ParseBundle(spiffeid.RequireTrustDomainFromString(td), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
