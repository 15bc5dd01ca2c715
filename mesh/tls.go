package mesh

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"reflect"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/identity"
)

// Credentials is the workload's own identity material: the X.509-SVID it
// presents and the trust bundles it verifies peers against. Both are
// go-spiffe sources, read on every handshake, so a source that rotates (a
// file watcher, the SPIFFE Workload API) needs no extra wiring; a static
// *x509svid.SVID and *x509bundle.Bundle (or Set) work as they are.
type Credentials struct {
	// SVID is the X.509-SVID this workload presents. Required.
	SVID x509svid.Source
	// Bundles holds the trust bundle of every trust domain whose members may
	// be verified. Required.
	Bundles x509bundle.Source
}

func (c Credentials) validate() error {
	if isNil(c.SVID) {
		return fmt.Errorf("mesh: credentials: no SVID source")
	}
	if isNil(c.Bundles) {
		return fmt.Errorf("mesh: credentials: no trust bundle source")
	}
	return nil
}

// ServerTLSConfig returns the TLS configuration of a mesh server: TLS 1.3
// only, a client certificate required, and the client's chain verified as an
// X.509-SVID with the clientAuth usage (see [identity.Verify]) and then passed
// to authorize, on every handshake, resumed ones included.
func ServerTLSConfig(creds Credentials, authorize tlsconfig.Authorizer) (*tls.Config, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	if authorize == nil {
		return nil, fmt.Errorf("mesh: server TLS: no peer authorizer")
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert,
		GetCertificate:   tlsconfig.GetCertificate(creds.SVID),
		VerifyConnection: verifyPeer(creds.Bundles, identity.Client, authorize),
		NextProtos:       []string{"h2"},
	}, nil
}

// ClientTLSConfig returns the TLS configuration of a mesh client: TLS 1.3
// only, presenting the workload's SVID, and accepting only a server whose
// chain verifies as an X.509-SVID with the serverAuth usage and whose SPIFFE
// ID passes authorize (typically [tlsconfig.AuthorizeID] of the expected
// server). Host names play no part: the server is known by its SPIFFE ID.
func ClientTLSConfig(creds Credentials, authorize tlsconfig.Authorizer) (*tls.Config, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	if authorize == nil {
		return nil, fmt.Errorf("mesh: client TLS: no server authorizer")
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: tlsconfig.GetClientCertificate(creds.SVID),
		// The standard verification checks host names against the web PKI;
		// a mesh server is verified in VerifyConnection instead, against the
		// SPIFFE bundle, on every handshake.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection below
		VerifyConnection:   verifyPeer(creds.Bundles, identity.Server, authorize),
		NextProtos:         []string{"h2"},
	}, nil
}

// verifyPeer returns a VerifyConnection callback: strict SVID rules, then the
// authorizer. It runs on every handshake, resumed sessions included, so a
// change of bundle or authorizer reaches every new connection.
func verifyPeer(bundles x509bundle.Source, role identity.Role, authorize tlsconfig.Authorizer) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		_, _, err := verifyChain(cs.PeerCertificates, bundles, role, authorize)
		return err
	}
}

// verifyChain verifies a peer's presented chain and returns the Principal
// it proves and the chains that verified (leaf first), which the authorizer
// is given too: never the certificates merely presented.
func verifyChain(presented []*x509.Certificate, bundles x509bundle.Source, role identity.Role, authorize tlsconfig.Authorizer) (identity.Principal, [][]*x509.Certificate, error) {
	p, chains, err := identity.VerifyChains(presented, bundles, role, time.Time{})
	if err != nil {
		return identity.Principal{}, nil, err
	}
	if err := authorize(p.ID, chains); err != nil {
		return identity.Principal{}, nil, fmt.Errorf("mesh: %s %q not authorized: %w", role, p.ID, err)
	}
	return p, chains, nil
}

// serverTLS builds the TLS configuration shared by both server kinds, and
// the TLS-level authorizer it uses (by trust domain).
func serverTLS(creds Credentials, cfg *serverConfig) (*tls.Config, tlsconfig.Authorizer, error) {
	if err := creds.validate(); err != nil {
		return nil, nil, err
	}
	var authorize tlsconfig.Authorizer
	if cfg.federated {
		// Verification needs a bundle for the caller's trust domain, so every
		// domain that passes it is one the credentials federate with.
		authorize = func(spiffeid.ID, [][]*x509.Certificate) error { return nil }
	} else {
		tds := cfg.trustDomains
		if len(tds) == 0 {
			svid, err := creds.SVID.GetX509SVID()
			if err != nil {
				return nil, nil, fmt.Errorf("mesh: read own SVID: %w", err)
			}
			tds = []spiffeid.TrustDomain{svid.ID.TrustDomain()}
		}
		authorize = AuthorizeMembers(tds...)
	}
	tlsCfg, err := ServerTLSConfig(creds, authorize)
	if err != nil {
		return nil, nil, err
	}
	return tlsCfg, authorize, nil
}

// AuthorizeMembers accepts peers from any of the given trust domains; it is
// the default server-side (TLS-level) authorizer, with the trust domain of
// the server's own SVID. Who may call which method is decided per call, by
// the authorization interceptors, not here.
func AuthorizeMembers(tds ...spiffeid.TrustDomain) tlsconfig.Authorizer {
	set := make(map[spiffeid.TrustDomain]struct{}, len(tds))
	for _, td := range tds {
		set[td] = struct{}{}
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if _, ok := set[id.TrustDomain()]; !ok {
			return fmt.Errorf("trust domain %q is not accepted", id.TrustDomain())
		}
		return nil
	}
}

// isNil reports whether v is nil or an interface holding a nil pointer
// (a (*x509svid.SVID)(nil) passed as a source).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
