package identity

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/josekey"
)

// The use values of the SPIFFE bundle format (SPIFFE Trust Domain and
// Bundle, 4.2.2): which type of SVID a key is authoritative for.
const (
	// UseX509SVID marks a CA certificate that X.509-SVIDs chain to.
	UseX509SVID = "x509-svid"
	// UseJWTSVID marks a key that signs JWT-SVIDs.
	UseJWTSVID = "jwt-svid"
)

// minRSABits is the smallest RSA key that may verify a JWT-SVID: RFC 7518
// (3.3, 3.5) requires 2048 bits or more for RS* and PS*.
const minRSABits = 2048

// BundleKey is one key of a SPIFFE bundle, kept with the use it was
// published for.
type BundleKey struct {
	// Use is what the key is authoritative for: [UseX509SVID] or
	// [UseJWTSVID]. A key verifies only SVIDs of its use.
	Use string
	// KeyID is the key's kid. Every jwt-svid key has one (JWT-SVID 6.1);
	// an x509-svid key usually has none.
	KeyID string
	// Algorithm is the key's alg parameter, or "" when it has none. When
	// set, a JWT-SVID verifies with the key only if its alg header is
	// exactly this.
	Algorithm string
	// Key is the public key: an *ecdsa.PublicKey (P-256, P-384 or P-521)
	// or an *rsa.PublicKey of at least 2048 bits for a jwt-svid key; for
	// an x509-svid key, the public key of Certificate.
	Key crypto.PublicKey
	// Certificate is the CA certificate of an x509-svid key (its one x5c
	// entry); nil for a jwt-svid key.
	Certificate *x509.Certificate
}

// Bundle is the SPIFFE bundle of one trust domain (SPIFFE Trust Domain and
// Bundle, 4): its keys, each with its use, as [ParseBundle] read them from
// the bundle's JWK Set, or as [NewBundle] was given them. Unlike go-spiffe's
// jwtbundle.Bundle, it remembers what each key is for, so that a CA
// certificate (use x509-svid) never verifies a JWT-SVID.
//
// A Bundle is immutable and safe for concurrent use. It is a
// [BundleSource] for its own trust domain.
type Bundle struct {
	td          spiffeid.TrustDomain
	keys        []BundleKey
	ignored     []string
	sequence    *uint64
	refreshHint time.Duration // 0: none
}

// BundleSource finds the SPIFFE bundle of a trust domain. [*Bundle] and
// [*BundleSet] are sources; so are the development CA of the certs
// package and its Workload API source.
type BundleSource interface {
	// BundleForTrustDomain returns the bundle of td, or an error when
	// there is none.
	BundleForTrustDomain(td spiffeid.TrustDomain) (*Bundle, error)
}

// NewBundle returns the bundle of td holding keys. Each key must have a
// known use, a public key, and, by use, a KeyID (jwt-svid) or a
// Certificate (x509-svid) whose public key is Key (or Key nil, which is
// then taken from the certificate).
func NewBundle(td spiffeid.TrustDomain, keys ...BundleKey) (*Bundle, error) {
	if td.IsZero() {
		return nil, wrapBundleErr(errors.New("no trust domain"))
	}
	b := &Bundle{td: td, keys: make([]BundleKey, 0, len(keys))}
	for i, k := range keys {
		if k.Use == UseX509SVID && k.Key == nil && k.Certificate != nil {
			k.Key = k.Certificate.PublicKey
		}
		if err := checkKey(k); err != nil {
			return nil, wrapBundleErr(fmt.Errorf("bundle of %q: key %d: %w", td.Name(), i, err))
		}
		b.keys = append(b.keys, k)
	}
	return b, nil
}

// checkKey fails unless k is a key a Bundle can hold.
func checkKey(k BundleKey) error {
	switch k.Use {
	case UseJWTSVID:
		if k.KeyID == "" {
			return errors.New("jwt-svid key has no kid (JWT-SVID 6.1)")
		}
		if k.Certificate != nil {
			return errors.New("jwt-svid key has a certificate")
		}
		return checkJWTKey(k.Key)
	case UseX509SVID:
		if k.Certificate == nil {
			return errors.New("x509-svid key has no certificate")
		}
		pub, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(k.Certificate.PublicKey) {
			return errors.New("x509-svid key is not the public key of its certificate")
		}
		return nil
	default:
		return fmt.Errorf("unknown use %q", clip.String(k.Use, maxEcho))
	}
}

// checkJWTKey fails unless key can verify a JWT-SVID under one of the
// algorithms the specification allows.
func checkJWTKey(key crypto.PublicKey) error {
	switch key := key.(type) {
	case *ecdsa.PublicKey:
		if ecAlg(key) == "" {
			return fmt.Errorf("EC key on curve %s, not P-256, P-384 or P-521", key.Curve.Params().Name)
		}
		return nil
	case *rsa.PublicKey:
		if bits := key.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits, fewer than %d (RFC 7518 3.3)", bits, minRSABits)
		}
		return nil
	case nil:
		return errors.New("no public key")
	default:
		return fmt.Errorf("%T is not an EC or RSA public key", key)
	}
}

// ParseBundle reads the SPIFFE bundle of td from data, a JWK Set in the
// SPIFFE bundle format (SPIFFE Trust Domain and Bundle, 4), as the SPIFFE
// Workload API, a bundle endpoint or `spire-server bundle show -format
// spiffe` give it.
//
// The keys parameter must be present: a document without one is an error.
// A JWK element that cannot be used is ignored, and the rest of the bundle
// kept (SPIFFE Trust Domain and Bundle 4.1.3, 4.2.1, 4.2.2; RFC 7517 5):
// one of unknown use (the values are case-sensitive), of a key type that
// can verify no SVID of its use (for a jwt-svid key only EC and RSA can:
// "oct" would be an HMAC secret), that does not parse, that holds private
// key material, a jwt-svid key without a kid (JWT-SVID 6.1) or an RSA one
// of fewer than 2048 bits, and an x509-svid key whose x5c is not exactly
// one certificate (X509-SVID 6.1). [Bundle.Ignored] says why each was
// ignored. A bundle left with no keys, or with no jwt-svid key, is valid:
// it trusts no SVID (or no JWT-SVID) of its trust domain.
//
// Object member names are case-sensitive and may not repeat, in the
// document and in each JWK.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*Bundle, error) {
	return parseBundle(td, data, "")
}

// ParseJWTBundle reads the JWT bundle of td from data, a JWK Set of
// JWT-SVID signing keys, as the SPIFFE Workload API's FetchJWTBundles
// streams it ("JWK encoded JWT bundles"; SPIRE writes them as a standard
// JWK Set, without the SPIFFE use parameter). It is [ParseBundle] with one
// difference: a key without use is a jwt-svid key, since the document holds
// nothing else. A key that says it is for anything else (x509-svid
// included) is ignored, as are the keys ParseBundle ignores.
func ParseJWTBundle(td spiffeid.TrustDomain, data []byte) (*Bundle, error) {
	return parseBundle(td, data, UseJWTSVID)
}

// parseBundle is ParseBundle, and with defaultUse ParseJWTBundle: the use
// of a key without one, and the only use kept.
func parseBundle(td spiffeid.TrustDomain, data []byte, defaultUse string) (*Bundle, error) {
	if td.IsZero() {
		return nil, wrapBundleErr(errors.New("no trust domain"))
	}
	fail := func(format string, args ...any) error {
		return wrapBundleErr(fmt.Errorf("bundle of %q: "+format, append([]any{td.Name()}, args...)...))
	}
	doc, err := jsonObject(data)
	if err != nil {
		return nil, fail("not a JSON object: %w", err)
	}
	b := &Bundle{td: td}
	if raw, ok := doc["spiffe_sequence"]; ok && !isNull(raw) {
		var seq uint64
		if err := json.Unmarshal(raw, &seq); err != nil {
			return nil, fail("spiffe_sequence %s is not an unsigned integer", clip.String(string(raw), maxEcho))
		}
		b.sequence = &seq
	}
	if raw, ok := doc["spiffe_refresh_hint"]; ok && !isNull(raw) {
		var hint int64
		if err := json.Unmarshal(raw, &hint); err != nil || hint < 0 || hint > int64(maxRefreshHint/time.Second) {
			return nil, fail("spiffe_refresh_hint %s is not a number of seconds from 0 to %d", clip.String(string(raw), maxEcho), int64(maxRefreshHint/time.Second))
		}
		b.refreshHint = time.Duration(hint) * time.Second
	}
	raw, ok := doc["keys"]
	if !ok || isNull(raw) {
		return nil, fail(`no "keys" parameter (it must be present, SPIFFE Trust Domain and Bundle 4.1.3)`)
	}
	var elements []json.RawMessage
	if err := json.Unmarshal(raw, &elements); err != nil {
		return nil, fail(`"keys" is not an array`)
	}
	for i, element := range elements {
		k, err := parseBundleKey(element, defaultUse)
		if err != nil {
			b.ignored = append(b.ignored, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		b.keys = append(b.keys, k)
	}
	return b, nil
}

// maxRefreshHint bounds spiffe_refresh_hint, so that it fits a
// time.Duration.
const maxRefreshHint = 100 * 365 * 24 * time.Hour

// jwtKeyTypes and x509KeyTypes are the kty values whose keys can verify an
// SVID of each use.
var (
	jwtKeyTypes  = []string{"EC", "RSA"}
	x509KeyTypes = []string{"EC", "RSA", "OKP"}
)

// parseBundleKey reads one JWK element of a SPIFFE bundle, or says why it
// must be ignored.
func parseBundleKey(element json.RawMessage, defaultUse string) (BundleKey, error) {
	members, err := jsonObject(element)
	if err != nil {
		return BundleKey{}, fmt.Errorf("not a JSON object: %w", err)
	}
	str := func(name string) (string, bool, error) {
		raw, ok := members[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, fmt.Errorf("%s %s is not a string", name, clip.String(string(raw), maxEcho))
		}
		return s, true, nil
	}
	use, hasUse, err := str("use")
	if err != nil {
		return BundleKey{}, err
	}
	kty, hasKty, err := str("kty")
	if err != nil {
		return BundleKey{}, err
	}
	kid, _, err := str("kid")
	if err != nil {
		return BundleKey{}, err
	}
	alg, _, err := str("alg")
	if err != nil {
		return BundleKey{}, err
	}
	if !hasUse && defaultUse != "" {
		use, hasUse = defaultUse, true
	}
	var known []string
	switch {
	case !hasUse:
		return BundleKey{}, errors.New("no use parameter")
	case defaultUse != "" && use != defaultUse:
		return BundleKey{}, fmt.Errorf("key of use %q in a JWT bundle, which holds only jwt-svid keys", clip.String(use, maxEcho))
	case use == UseJWTSVID:
		known = jwtKeyTypes
	case use == UseX509SVID:
		known = x509KeyTypes
	default:
		return BundleKey{}, fmt.Errorf("unknown use %q", clip.String(use, maxEcho))
	}
	switch {
	case !hasKty:
		return BundleKey{}, errors.New("no kty parameter")
	case !slices.Contains(known, kty):
		return BundleKey{}, fmt.Errorf("%s key of unknown key type %q", use, clip.String(kty, maxEcho))
	}
	if _, ok := members["d"]; ok {
		return BundleKey{}, fmt.Errorf("%s key holds private key material", use)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(element); err != nil {
		return BundleKey{}, fmt.Errorf("%s %s key: %s", use, kty, clip.String(josekey.Message(err), maxEcho))
	}
	k := BundleKey{Use: use, KeyID: kid, Algorithm: alg, Key: jwk.Key}
	if use == UseX509SVID {
		if len(jwk.Certificates) != 1 {
			return BundleKey{}, fmt.Errorf("x509-svid key with %d certificates in x5c, not exactly one (X509-SVID 6.1)", len(jwk.Certificates))
		}
		k.Certificate = jwk.Certificates[0]
	} else if _, ok := members["x5c"]; ok {
		return BundleKey{}, errors.New("jwt-svid key with an x5c parameter")
	}
	if err := checkKey(k); err != nil {
		return BundleKey{}, err
	}
	return k, nil
}

// TrustDomain returns the trust domain the bundle is for.
func (b *Bundle) TrustDomain() spiffeid.TrustDomain { return b.td }

// Keys returns the bundle's keys, of every use, in the order of the
// document. The slice is a copy; the keys and certificates are shared and
// must not be modified.
func (b *Bundle) Keys() []BundleKey { return slices.Clone(b.keys) }

// JWTKeys returns the keys that verify JWT-SVIDs (use jwt-svid). None
// means the trust domain does not support JWT-SVIDs (JWT-SVID 6.2).
func (b *Bundle) JWTKeys() []BundleKey { return b.keysOf(UseJWTSVID) }

// X509Authorities returns the CA certificates of the keys of use
// x509-svid, the roots that X.509-SVIDs chain to.
func (b *Bundle) X509Authorities() []*x509.Certificate {
	var out []*x509.Certificate
	for _, k := range b.keysOf(UseX509SVID) {
		out = append(out, k.Certificate)
	}
	return out
}

func (b *Bundle) keysOf(use string) []BundleKey {
	var out []BundleKey
	for _, k := range b.keys {
		if k.Use == use {
			out = append(out, k)
		}
	}
	return out
}

// Ignored says, for each JWK element that [ParseBundle] ignored, which one
// it was (by index) and why, e.g. `key 2: jwt-svid key of unknown key type
// "OKP"`. It is empty for a bundle from [NewBundle].
func (b *Bundle) Ignored() []string { return slices.Clone(b.ignored) }

// SequenceNumber returns the bundle's spiffe_sequence, and whether it has
// one.
func (b *Bundle) SequenceNumber() (uint64, bool) {
	if b.sequence == nil {
		return 0, false
	}
	return *b.sequence, true
}

// RefreshHint returns the bundle's spiffe_refresh_hint, or 0 when it has
// none.
func (b *Bundle) RefreshHint() time.Duration { return b.refreshHint }

// BundleForTrustDomain returns b if td is its trust domain. It makes a
// Bundle a [BundleSource].
func (b *Bundle) BundleForTrustDomain(td spiffeid.TrustDomain) (*Bundle, error) {
	if td != b.td {
		return nil, wrapBundleErr(fmt.Errorf("no bundle for trust domain %q (this one is for %q)", td.Name(), b.td.Name()))
	}
	return b, nil
}

// Marshal returns the bundle as a SPIFFE bundle document: a JWK Set whose
// keys carry their use (and kid, x5c), with spiffe_sequence and
// spiffe_refresh_hint when the bundle has them.
func (b *Bundle) Marshal() ([]byte, error) {
	doc := struct {
		Keys     []jose.JSONWebKey `json:"keys"`
		Sequence *uint64           `json:"spiffe_sequence,omitempty"`
		Refresh  *int64            `json:"spiffe_refresh_hint,omitempty"`
	}{Keys: make([]jose.JSONWebKey, 0, len(b.keys)), Sequence: b.sequence}
	if b.refreshHint > 0 {
		s := int64(b.refreshHint / time.Second)
		doc.Refresh = &s
	}
	for _, k := range b.keys {
		jwk := jose.JSONWebKey{Key: k.Key, KeyID: k.KeyID, Algorithm: k.Algorithm, Use: k.Use}
		if k.Certificate != nil {
			jwk.Certificates = []*x509.Certificate{k.Certificate}
		}
		doc.Keys = append(doc.Keys, jwk)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, wrapBundleErr(fmt.Errorf("marshal the bundle of %q: %w", b.td.Name(), err))
	}
	return append(out, '\n'), nil
}

// BundleSet is a [BundleSource] holding the bundles of several trust
// domains, one each. Build it with [NewBundleSet]; it is immutable and safe
// for concurrent use.
type BundleSet struct {
	bundles map[spiffeid.TrustDomain]*Bundle
}

// NewBundleSet returns the set of bundles. A trust domain given twice
// keeps its last bundle; nil bundles are skipped.
func NewBundleSet(bundles ...*Bundle) *BundleSet {
	s := &BundleSet{bundles: make(map[spiffeid.TrustDomain]*Bundle, len(bundles))}
	for _, b := range bundles {
		if b != nil {
			s.bundles[b.td] = b
		}
	}
	return s
}

// BundleForTrustDomain returns the bundle of td in the set.
func (s *BundleSet) BundleForTrustDomain(td spiffeid.TrustDomain) (*Bundle, error) {
	if b, ok := s.bundles[td]; ok {
		return b, nil
	}
	return nil, wrapBundleErr(fmt.Errorf("no bundle for trust domain %q", td.Name()))
}

// Bundles returns the bundles of the set, sorted by trust domain.
func (s *BundleSet) Bundles() []*Bundle {
	out := make([]*Bundle, 0, len(s.bundles))
	for _, b := range s.bundles {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *Bundle) int { return cmp.Compare(a.td.Name(), b.td.Name()) })
	return out
}

// jsonObject decodes data, one JSON object and nothing after it, into its
// members, refusing a member name that repeats (which encoding/json would
// resolve silently, and another parser differently: RFC 7515 4, RFC 7519
// 4).
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		name := tok.(string) // object keys are always strings
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, syntaxError(err)
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("member %q appears twice", clip.String(name, maxEcho))
		}
		members[name] = value
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return members, nil
}

// syntaxError shortens a JSON decoding error for a one-line message.
func syntaxError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of JSON")
	}
	return errors.New(clip.String(err.Error(), maxEcho))
}

func wrapBundleErr(err error) error { return fmt.Errorf("identity: %w", err) }
