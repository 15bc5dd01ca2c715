package tokens

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trustmesh/trustmesh/internal/josekey"
)

// accepted are the only signature algorithms tokens are signed with.
var accepted = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// publicKey is one key of an issuer, as a verifier uses it.
type publicKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key crypto.PublicKey
}

// algFor returns the one algorithm accepted with key ([josekey.Alg]): ES256
// for an ECDSA P-256 key, RS256 for an RSA key of 2048 bits or more, EdDSA
// for Ed25519. Any other key is refused, in tokens' words.
func algFor(key crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	alg, why := josekey.Alg(key)
	switch why {
	case josekey.Fits:
		return alg, nil
	case josekey.NotP256:
		if curve := josekey.CurveName(key); curve != "" {
			return "", fmt.Errorf("EC key on curve %s (want P-256, for ES256)", curve)
		}
		return "", errors.New("EC key without a curve (want P-256, for ES256)")
	case josekey.NoModulus:
		return "", fmt.Errorf("RSA key without a modulus (want at least %d bits)", josekey.MinRSABits)
	case josekey.ShortRSA:
		return "", fmt.Errorf("RSA key of %d bits (want at least %d)", josekey.RSABits(key), josekey.MinRSABits)
	default:
		return "", fmt.Errorf("%T is not an ECDSA P-256, RSA or Ed25519 public key", key)
	}
}

func newPublicKey(key crypto.PublicKey, kid string) (publicKey, error) {
	alg, err := algFor(key)
	if err != nil {
		return publicKey{}, err
	}
	if kid == "" {
		if kid, err = josekey.ID(key); err != nil {
			return publicKey{}, err
		}
	}
	return publicKey{kid: kid, alg: alg, key: key}, nil
}

// loadKeyFile reads the PEM "PUBLIC KEY" blocks (PKIX) of path. Each key's
// ID is its RFC 7638 thumbprint.
func loadKeyFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			return nil, fmt.Errorf("key file %s: PEM block %d is a private key (give verifiers the public key only)", path, n)
		default:
			return nil, fmt.Errorf("key file %s: PEM block %d is a %q (want PUBLIC KEY)", path, n, block.Type)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: PEM block %d: %w", path, n, err)
		}
		k, err := newPublicKey(pub, "")
		if err != nil {
			return nil, fmt.Errorf("key file %s: PEM block %d: %w", path, n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key file %s: no PEM PUBLIC KEY block", path)
	}
	return keys, nil
}

// loadJWKS reads the JSON Web Key Set of path: public signature keys only,
// each ES256, RS256 or EdDSA. A key without a kid gets its RFC 7638
// thumbprint.
func loadJWKS(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS file %s: %w", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("JWKS file %s: no keys", path)
	}
	keys := make([]publicKey, 0, len(set.Keys))
	seen := map[string]bool{}
	for i, jwk := range set.Keys {
		name := fmt.Sprintf("key %d", i+1)
		if jwk.KeyID != "" {
			name = fmt.Sprintf("key %q", jwk.KeyID)
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("JWKS file %s: %s: %s", path, name, fmt.Sprintf(format, args...))
		}
		if _, symmetric := jwk.Key.([]byte); symmetric {
			return nil, fail("a symmetric (oct) key is not accepted (want public keys)")
		}
		if !jwk.IsPublic() {
			return nil, fail("holds a private key (publish public keys only)")
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			return nil, fail("use %q (want sig)", jwk.Use)
		}
		k, err := newPublicKey(jwk.Key, jwk.KeyID)
		if err != nil {
			return nil, fail("%v", err)
		}
		if jwk.Algorithm != "" && jose.SignatureAlgorithm(jwk.Algorithm) != k.alg {
			return nil, fail("alg %q does not fit the key (want %s)", jwk.Algorithm, k.alg)
		}
		if seen[k.kid] {
			return nil, fail("duplicate kid")
		}
		seen[k.kid] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// loadSigningKey reads a PEM private key: PKCS#8 ("PRIVATE KEY") or SEC 1
// ("EC PRIVATE KEY").
func loadSigningKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s: PEM block is a %q (want PRIVATE KEY)", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key file %s: %T is not a signing key", path, key)
	}
	if _, err := algFor(signer.Public()); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return signer, nil
}
