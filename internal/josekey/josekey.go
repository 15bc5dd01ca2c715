// Package josekey holds what trustmesh's JWS signers and verifiers (txn,
// tokens, identity's JWT-SVIDs, the development CA) share about keys and
// go-jose: which algorithm a public key signs with, how a key is described
// in an error, its RFC 7638 key ID, and go-jose's error text without its
// package prefix. Each caller words its own errors from what it returns.
package josekey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA key [Alg] accepts.
const MinRSABits = 2048

// Reason says why [Alg] finds no algorithm for a key.
type Reason int

const (
	// Fits is a key that signs with the algorithm Alg returns.
	Fits Reason = iota
	// NotP256 is an ECDSA key on a curve other than P-256, or on none.
	NotP256
	// NoModulus is an RSA key without a modulus.
	NoModulus
	// ShortRSA is an RSA key of fewer than [MinRSABits] bits.
	ShortRSA
	// OtherKind is a key that is neither ECDSA, Ed25519 nor RSA.
	OtherKind
)

// Alg returns the one algorithm that signs with key: ES256 for an ECDSA
// P-256 key, EdDSA for Ed25519, RS256 for RSA of [MinRSABits] bits or
// more, and [Fits]. For any other key it returns "" and why.
func Alg(key crypto.PublicKey) (jose.SignatureAlgorithm, Reason) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == nil || k.Curve != elliptic.P256() {
			return "", NotP256
		}
		return jose.ES256, Fits
	case ed25519.PublicKey:
		return jose.EdDSA, Fits
	case *rsa.PublicKey:
		if k.N == nil {
			return "", NoModulus
		}
		if k.N.BitLen() < MinRSABits {
			return "", ShortRSA
		}
		return jose.RS256, Fits
	default:
		return "", OtherKind
	}
}

// Kind names the kind of a public key for an error: "ECDSA P-384",
// "ECDSA (no curve)", "Ed25519", "RSA 1024-bit", "RSA (no modulus)", or
// the Go type of any other key.
func Kind(key crypto.PublicKey) string {
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

// CurveName returns the name of the curve of an ECDSA key ("P-384"), or ""
// for a key without a curve or one of another kind.
func CurveName(key crypto.PublicKey) string {
	if k, ok := key.(*ecdsa.PublicKey); ok && k.Curve != nil {
		return k.Curve.Params().Name
	}
	return ""
}

// RSABits returns the size in bits of the modulus of an RSA key, or 0 for
// a key without a modulus or one of another kind.
func RSABits(key crypto.PublicKey) int {
	if k, ok := key.(*rsa.PublicKey); ok && k.N != nil {
		return k.N.BitLen()
	}
	return 0
}

// AlgKind names the kind of key alg signs with, for an error: "ECDSA
// P-256" for ES256, "RSA" for RS256, "Ed25519" for EdDSA, and "" for any
// other algorithm.
func AlgKind(alg jose.SignatureAlgorithm) string {
	switch alg {
	case jose.ES256:
		return "ECDSA P-256"
	case jose.RS256:
		return "RSA"
	case jose.EdDSA:
		return "Ed25519"
	default:
		return ""
	}
}

// ID returns the RFC 7638 thumbprint of key (SHA-256, unpadded
// base64url): the kid by which trustmesh names a signing key in JWS
// headers and JWK sets. Its error is go-jose's, for a key it cannot
// thumbprint.
func ID(key crypto.PublicKey) (string, error) {
	sum, err := (&jose.JSONWebKey{Key: key}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// prefixes are the package prefixes go-jose puts on its errors: v4's
// ("go-jose/go-jose", and its jwt package's) and the older "square/go-jose".
var prefixes = []string{"go-jose/go-jose/jwt: ", "go-jose/go-jose: ", "square/go-jose: "}

// Message returns the text of err, an error of go-jose, without the
// package prefix it starts with; the whole text when only the prefix is
// left.
func Message(err error) string {
	msg := err.Error()
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(msg, p); ok && rest != "" {
			return rest
		}
	}
	return msg
}
