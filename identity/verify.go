package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
)

// Verify checks chain (the peer's certificates, leaf first, as presented in
// the handshake) against the X.509-SVID rules and the trust bundles in
// bundles, as seen at time now (the zero time means the current time), and
// returns the Principal it proves. role names what the peer claims to be.
//
// Verify fails closed: every error names the rule that was broken, and the
// returned Principal is then the zero value.
func Verify(chain []*x509.Certificate, bundles x509bundle.Source, role Role, now time.Time) (Principal, error) {
	if role != Client && role != Server {
		return Principal{}, wrapErr(errNoRole)
	}
	if len(chain) == 0 {
		return Principal{}, wrapErr(errNoCertificate)
	}
	var opts []x509svid.VerifyOption
	if !now.IsZero() {
		opts = append(opts, x509svid.WithTime(now))
	}
	id, _, err := x509svid.Verify(chain, bundles, opts...)
	if err != nil {
		return Principal{}, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(chain[0], id), err))
	}
	if id.Path() == "" {
		return Principal{}, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(chain[0], id), errEmptyPath))
	}
	if chain[0].KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return Principal{}, wrapErr(fmt.Errorf("%s certificate %s: %w", role, describe(chain[0], id), errNoDigSig))
	}
	if !hasUsage(chain[0], role.usage()) {
		return Principal{}, wrapErr(fmt.Errorf("%s certificate %s: leaf lacks the %s extended key usage", role, describe(chain[0], id), usageName(role.usage())))
	}
	return Principal{ID: id, Leaf: chain[0]}, nil
}

// FromConnectionState returns the Principal of the peer of a connection whose
// certificates were already verified by [Verify] during the handshake (the
// mesh's TLS configurations guarantee that). It re-reads the SPIFFE ID from
// the leaf without re-verifying the chain, so call it once per connection.
func FromConnectionState(cs *tls.ConnectionState) (Principal, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Principal{}, wrapErr(errNoCertificate)
	}
	leaf := cs.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return Principal{}, wrapErr(fmt.Errorf("peer certificate serial %s: %w", leaf.SerialNumber, err))
	}
	return Principal{ID: id, Leaf: leaf}, nil
}

func hasUsage(leaf *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range leaf.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
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

func wrapErr(err error) error { return fmt.Errorf("identity: %w", err) }
