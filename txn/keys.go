package txn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// algorithms are the only signature algorithms of transaction tokens: one
// per kind of SVID key. Never "none", never an HMAC.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256}

// minRSABits is the smallest RSA key accepted.
const minRSABits = 2048

// algFor returns the one algorithm that signs with key: ES256 for an ECDSA
// P-256 key, EdDSA for Ed25519, RS256 for RSA of 2048 bits or more. Any
// other key is refused.
func algFor(key crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == nil || k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%s key (want P-256, for ES256)", keyKind(key))
		}
		return jose.ES256, nil
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		if k.N == nil {
			return "", errors.New("RSA key without a modulus")
		}
		if n := k.N.BitLen(); n < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits (want at least %d, for RS256)", n, minRSABits)
		}
		return jose.RS256, nil
	default:
		return "", fmt.Errorf("%s key (want ECDSA P-256, Ed25519 or RSA)", keyKind(key))
	}
}

// keyKind names the kind of a public key for an error.
func keyKind(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA (no curve)"
		}
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		if k.N == nil {
			return "RSA (no modulus)"
		}
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	default:
		return fmt.Sprintf("%T", key)
	}
}
