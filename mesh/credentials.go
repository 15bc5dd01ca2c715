package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

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
	log   *slog.Logger
	peers *peers // server side only
}

// newTransportCredentials returns the credentials of cfg; a server passes
// peers, whose tlsConfig cfg must come from.
func newTransportCredentials(cfg *tls.Config, log *slog.Logger, peers *peers) credentials.TransportCredentials {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &transportCredentials{TransportCredentials: credentials.NewTLS(cfg), log: log, peers: peers}
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
	var p identity.Principal
	if pc != nil {
		p, _ = pc.state.Principal()
	}
	if !ok || p.IsZero() {
		c.peers.forget(raw)
		_ = conn.Close()
		if !ok {
			return nil, nil, errNotTLS
		}
		return nil, nil, errNoVerified
	}
	return &trackedConn{Conn: conn, raw: raw, peers: c.peers}, authn.AuthInfo{TLSInfo: tlsInfo, Principal: p}, nil
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
	// The server's chain was verified in VerifyConnection during the
	// handshake that just succeeded; read its ID for the AuthInfo.
	p, err := identity.FromConnectionState(&tlsInfo.State)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return newExpiringConn(conn, tlsInfo.State.PeerCertificates), authn.AuthInfo{TLSInfo: tlsInfo, Principal: p}, nil
}

func (c *transportCredentials) Clone() credentials.TransportCredentials {
	return &transportCredentials{TransportCredentials: c.TransportCredentials.Clone(), log: c.log, peers: c.peers}
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
