package txn

import (
	"crypto"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trustmesh/trustmesh/internal/josekey"
)

// algorithms are the only signature algorithms of transaction tokens: one
// per kind of SVID key. Never "none", never an HMAC.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256}

// algFor returns the one algorithm that signs with key ([josekey.Alg]): ES256
// for an ECDSA P-256 key, EdDSA for Ed25519, RS256 for RSA of 2048 bits or
// more. Any other key is refused, in txn's words.
func algFor(key crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	alg, why := josekey.Alg(key)
	switch why {
	case josekey.Fits:
		return alg, nil
	case josekey.NotP256:
		return "", fmt.Errorf("%s key (want P-256, for ES256)", josekey.Kind(key))
	case josekey.NoModulus:
		return "", errors.New("RSA key without a modulus")
	case josekey.ShortRSA:
		return "", fmt.Errorf("RSA key of %d bits (want at least %d, for RS256)", josekey.RSABits(key), josekey.MinRSABits)
	default:
		return "", fmt.Errorf("%s key (want ECDSA P-256, Ed25519 or RSA)", josekey.Kind(key))
	}
}
