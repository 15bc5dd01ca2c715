package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/credentials"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// transportCredentials are grpc-go TLS credentials whose AuthInfo carries the
// peer's Principal, verified once at the handshake, and which log why a
// handshake failed. On a server, peers holds the live connections (their
// expiry and re-verification); on a client, a connection closes itself when
// the server's certificate expires.
type transportCredentials struct {
	credentials.TransportCredentials
	log    *slog.Logger
	peers  *peers        // server side only
	server *serverVerify // client side only
}

// serverVerify is how a client verifies its server.
type serverVerify struct {
	bundles   x509bundle.Source
	authorize tlsconfig.Authorizer
}

// newServerCredentials returns a server's credentials; cfg must come from
// peers.tlsConfig.
func newServerCredentials(cfg *tls.Config, log *slog.Logger, peers *peers) credentials.TransportCredentials {
	return &transportCredentials{TransportCredentials: credentials.NewTLS(cfg), log: log, peers: peers}
}

// newClientCredentials returns a client's credentials; cfg must verify the
// server as sv does.
func newClientCredentials(cfg *tls.Config, sv *serverVerify) credentials.TransportCredentials {
	return &transportCredentials{TransportCredentials: credentials.NewTLS(cfg), log: slog.New(slog.DiscardHandler), server: sv}
}

var (
	errNotTLS     = errors.New("mesh: handshake did not produce TLS connection state")
	errNoVerified = errors.New("mesh: handshake verified no peer")
)

func (c *transportCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.peers.forget(raw)
		c.log.Warn("mesh: refused connection: TLS handshake failed",
			slog.String("remote", raw.RemoteAddr().String()), slog.String("error", err.Error()))
		return nil, nil, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	pc := c.peers.lookup(raw)
	var p *identity.Principal
	if pc != nil {
		p, _ = pc.state.Principal()
	}
	if !ok || p == nil {
		c.peers.forget(raw)
		_ = conn.Close()
		if !ok {
			return nil, nil, errNotTLS
		}
		return nil, nil, errNoVerified
	}
	return &trackedConn{Conn: conn, raw: raw, peers: c.peers}, &authn.AuthInfo{TLSInfo: tlsInfo, Principal: *p}, nil
}

func (c *transportCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		_ = conn.Close()
		return nil, nil, errNotTLS
	}
	// VerifyConnection refused a bad server during the handshake; verify
	// again here (once per connection) for the Principal and the chains
	// whose expiry ends the connection.
	p, chains, err := verifyChain(tlsInfo.State.PeerCertificates, c.server.bundles, identity.Server, c.server.authorize)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return newExpiringConn(conn, chains), &authn.AuthInfo{TLSInfo: tlsInfo, Principal: p}, nil
}

func (c *transportCredentials) Clone() credentials.TransportCredentials {
	return &transportCredentials{TransportCredentials: c.TransportCredentials.Clone(), log: c.log, peers: c.peers, server: c.server}
}

// trackedConn is a server connection whose entry in peers is dropped when
// it closes.
type trackedConn struct {
	net.Conn
	raw   net.Conn
	peers *peers
}

func (c *trackedConn) Close() error {
	c.peers.forget(c.raw)
	return c.Conn.Close()
}
