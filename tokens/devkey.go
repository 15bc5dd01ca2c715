package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trustmesh/trustmesh/internal/pemfile"
	"io/fs"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
)

// The files [InitDev] writes in its directory.
const (
	// KeyFile is the development issuer's private key (PEM PKCS#8, ECDSA
	// P-256, mode 0600).
	KeyFile = "token-key.pem"
	// JWKSFile is its public key as a JSON Web Key Set, for verifiers.
	JWKSFile = "token-jwks.json"
)

// DevKey says what [InitDev] did.
type DevKey struct {
	// KeyFile and JWKSFile are the paths of the files in the directory.
	KeyFile, JWKSFile string
	// KeyID is the kid of the key (its RFC 7638 thumbprint).
	KeyID string
	// Created reports that a new key was generated; false means the key
	// already in the directory was kept.
	Created bool
}

// InitDev makes dir hold a development token issuer's key: [KeyFile], a
// new ECDSA P-256 private key (mode 0600), and [JWKSFile], its public key
// (kid, alg ES256, use sig), each written atomically. A key already in dir
// is kept, and the JWKS written again from it, unless force is set, which
// replaces it (tokens signed with the old key then stop verifying).
func InitDev(dir string, force bool) (DevKey, error) {
	res := DevKey{KeyFile: filepath.Join(dir, KeyFile), JWKSFile: filepath.Join(dir, JWKSFile)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DevKey{}, fmt.Errorf("tokens: %w", err)
	}
	var key crypto.Signer
	if !force {
		k, err := loadSigningKey(res.KeyFile)
		switch {
		case err == nil:
			key = k
		case !errors.Is(err, fs.ErrNotExist):
			return DevKey{}, fmt.Errorf("tokens: %w (--force replaces it)", err)
		}
	}
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return DevKey{}, fmt.Errorf("tokens: %w", err)
		}
		keyPEM, err := pemfile.MarshalPrivateKey(k)
		if err != nil {
			return DevKey{}, fmt.Errorf("tokens: %w", err)
		}
		if err := pemfile.WriteAtomic(res.KeyFile, keyPEM, 0o600); err != nil {
			return DevKey{}, fmt.Errorf("tokens: write %s: %w", res.KeyFile, err)
		}
		key, res.Created = k, true
	}
	pub, err := newPublicKey(key.Public(), "")
	if err != nil {
		return DevKey{}, fmt.Errorf("tokens: %w", err)
	}
	res.KeyID = pub.kid
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub.key, KeyID: pub.kid, Algorithm: string(pub.alg), Use: "sig"}}}
	data, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return DevKey{}, fmt.Errorf("tokens: %w", err)
	}
	if err := pemfile.WriteAtomic(res.JWKSFile, append(data, '\n'), 0o644); err != nil {
		return DevKey{}, fmt.Errorf("tokens: write %s: %w", res.JWKSFile, err)
	}
	return res, nil
}
