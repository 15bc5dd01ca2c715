package identity

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/clip"
)

// Role says which side of a connection a certificate is presented by, and so
// which extended key usage its leaf must carry.
type Role int

const (
	// Client is a caller: its leaf must carry the clientAuth extended key usage.
	Client Role = iota + 1
	// Server is a callee: its leaf must carry the serverAuth extended key usage.
	Server
)

// String returns "client" or "server".
func (r Role) String() string {
	switch r {
	case Client:
		return "client"
	case Server:
		return "server"
	default:
		return fmt.Sprintf("role(%d)", int(r))
	}
}

func (r Role) usage() x509.ExtKeyUsage {
	if r == Server {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

var (
	errNoCertificate = errors.New("peer presented no certificate")
	errEmptyPath     = errors.New("SPIFFE ID of an X.509-SVID must have a path")
	errNoRole        = errors.New("role must be Client or Server")
	errNoDigSig      = errors.New("leaf lacks the digitalSignature key usage")
	errBadSAN        = errors.New("subjectAltName extension does not hold exactly one URI SAN")
)

// Verify checks chain (the peer's certificates, leaf first, as presented in
// the handshake) against the X.509-SVID rules and the trust bundles in
// bundles, as seen at time now (the zero time means the current time), and
// returns the Principal it proves. role names what the peer claims to be.
// It is [VerifyChains] without the verified chains.
//
// Verify fails closed: every error names the rule that was broken, and the
// returned Principal is then the zero value.
func Verify(chain []*x509.Certificate, bundles x509bundle.Source, role Role, now time.Time) (Principal, error) {
	p, _, err := VerifyChains(chain, bundles, role, now)
	return p, err
}

// VerifyChains is [Verify] that also returns the chains it verified: each
// runs from the leaf, through intermediates taken from chain, to a root of
// the bundle of the leaf's trust domain, and every CA certificate in it
// permits the extended key usage of role. These, not the certificates the
// peer presented, are what a go-spiffe tlsconfig.Authorizer must be given.
//
// On top of go-spiffe's x509svid.Verify it requires that the leaf's one URI
// SAN, as written in the certificate, is byte for byte the canonical form
// of its SPIFFE ID (no "SPIFFE://", no empty fragment "#": nothing that a
// URL parser would normalise away), that the ID has a path, that the leaf
// carries the digitalSignature key usage, and that it names the extended
// key usage of role explicitly (clientAuth for [Client], serverAuth for
// [Server]): a leaf with no extended key usage, or with only
// anyExtendedKeyUsage, is refused.
//
// On error the Principal is the zero value and the chains are nil.
func VerifyChains(chain []*x509.Certificate, bundles x509bundle.Source, role Role, now time.Time) (Principal, [][]*x509.Certificate, error) {
	if role != Client && role != Server {
		return Principal{}, nil, wrapErr(errNoRole)
	}
	if len(chain) == 0 {
		return Principal{}, nil, wrapErr(errNoCertificate)
	}
	leaf := chain[0]
	// The SAN is checked before anything else is said about the leaf, so
	// that no error names the ID a parser made of a non-canonical SAN.
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		if err := checkCanonical(leaf, id); err != nil {
			return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate serial %s: %w", role, leaf.SerialNumber, err))
		}
	}
	var opts []x509svid.VerifyOption
	if !now.IsZero() {
		opts = append(opts, x509svid.WithTime(now))
	}
	id, verified, err := x509svid.Verify(chain, bundles, opts...)
	if err != nil {
		return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(leaf, id), err))
	}
	if id.Path() == "" {
		return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(leaf, id), errEmptyPath))
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(leaf, id), errNoDigSig))
	}
	if !slices.Contains(leaf.ExtKeyUsage, role.usage()) {
		return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate %s: leaf lacks the %s extended key usage", role, describe(leaf, id), usageName(role.usage())))
	}
	permitted, refusedBy := permittedChains(verified, role.usage())
	if len(permitted) == 0 {
		return Principal{}, nil, wrapErr(fmt.Errorf("%s certificate %s: CA certificate %s of its chain does not permit the %s extended key usage",
			role, describe(leaf, id), describeCA(refusedBy), usageName(role.usage())))
	}
	return Principal{ID: id, Leaf: leaf}, permitted, nil
}

// oidSubjectAltName is the OID of the subjectAltName extension (RFC 5280,
// 4.2.1.6).
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// uriNameTag is the tag of a uniformResourceIdentifier GeneralName: [6]
// IMPLICIT IA5String.
const uriNameTag = 6

// checkCanonical fails unless the one URI SAN of leaf, as its
// subjectAltName extension spells it, is exactly id.String(). crypto/x509
// hands out the SAN as a parsed url.URL, and go-spiffe reads the ID from
// its String(), which lowercases the scheme and drops an empty fragment:
// "SPIFFE://td/x" and "spiffe://td/x#" would both pass as spiffe://td/x.
func checkCanonical(leaf *x509.Certificate, id spiffeid.ID) error {
	var uris [][]byte
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return errBadSAN
		}
		for rest := seq.Bytes; len(rest) > 0; {
			var name asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &name); err != nil {
				return errBadSAN
			}
			if name.Class == asn1.ClassContextSpecific && name.Tag == uriNameTag && !name.IsCompound {
				uris = append(uris, name.Bytes)
			}
		}
	}
	if len(uris) != 1 {
		return errBadSAN
	}
	if raw := string(uris[0]); raw != id.String() {
		return fmt.Errorf("URI SAN %q is not in canonical form %q", clip.String(raw, maxEcho), clip.String(id.String(), maxEcho))
	}
	return nil
}

// permittedChains returns the chains of verified in which every CA
// certificate permits the extended key usage want, under the rule of
// crypto/x509: a CA certificate without extended key usages permits all,
// one with anyExtendedKeyUsage too, any other only those it lists. When
// none is left, refusedBy is a CA certificate that refused.
func permittedChains(verified [][]*x509.Certificate, want x509.ExtKeyUsage) (permitted [][]*x509.Certificate, refusedBy *x509.Certificate) {
	permitted = make([][]*x509.Certificate, 0, len(verified))
	for _, chain := range verified {
		ok := true
		for _, ca := range chain[1:] {
			if len(ca.ExtKeyUsage) == 0 && len(ca.UnknownExtKeyUsage) == 0 ||
				slices.Contains(ca.ExtKeyUsage, x509.ExtKeyUsageAny) || slices.Contains(ca.ExtKeyUsage, want) {
				continue
			}
			ok, refusedBy = false, ca
			break
		}
		if ok {
			permitted = append(permitted, chain)
		}
	}
	return permitted, refusedBy
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "serverAuth"
	}
	return "clientAuth"
}

// describe names a certificate in an error: by its SPIFFE ID when one could
// be read, else by its serial number, never by anything it merely claims in
// the Subject.
func describe(leaf *x509.Certificate, id spiffeid.ID) string {
	if !id.IsZero() {
		return fmt.Sprintf("%q", id.String())
	}
	return "serial " + leaf.SerialNumber.String()
}

// describeCA names a CA certificate in an error: by its Subject, which the
// bundle's owner chose, and its serial number.
func describeCA(ca *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", clip.String(ca.Subject.String(), maxEcho), ca.SerialNumber)
}

// maxEcho bounds how much of a string read from a certificate not yet
// verified, or from a token, goes into an error: such a string is cut with
// [clip.String] to maxEcho bytes on a rune boundary and marked "..." when
// longer.
const maxEcho = 256

func wrapErr(err error) error { return fmt.Errorf("identity: %w", err) }
