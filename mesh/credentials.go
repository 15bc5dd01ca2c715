package mesh

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
)

// transportCredentials are grpc-go TLS credentials whose AuthInfo carries the
// peer's Principal, read once at the handshake (see
// [interceptors.PrincipalAuthInfo]), and which log why a handshake failed.
type transportCredentials struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func newTransportCredentials(cfg *tls.Config, log *slog.Logger) credentials.TransportCredentials {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &transportCredentials{TransportCredentials: credentials.NewTLS(cfg), log: log}
}

func (c *transportCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.log.Warn("mesh: refused connection: TLS handshake failed",
			slog.String("remote", raw.RemoteAddr().String()), slog.String("error", err.Error()))
		return nil, nil, err
	}
	return wrapAuthInfo(conn, info)
}

func (c *transportCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	return wrapAuthInfo(conn, info)
}

func (c *transportCredentials) Clone() credentials.TransportCredentials {
	return &transportCredentials{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

func wrapAuthInfo(conn net.Conn, info credentials.AuthInfo) (net.Conn, credentials.AuthInfo, error) {
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		_ = conn.Close()
		return nil, nil, errNotTLS
	}
	p, err := identity.FromConnectionState(&tlsInfo.State)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, authInfo{TLSInfo: tlsInfo, principal: p}, nil
}

// authInfo is the AuthInfo of a verified mesh connection.
type authInfo struct {
	credentials.TLSInfo
	principal identity.Principal
}

// Principal returns the verified peer.
func (a authInfo) Principal() identity.Principal { return a.principal }

var _ interceptors.PrincipalAuthInfo = authInfo{}

// GetTLSInfo returns the connection's plain TLS information, for code that
// expects grpc-go's credentials.TLSInfo (such as grpc-go's authz package).
func (a authInfo) GetTLSInfo() credentials.TLSInfo { return a.TLSInfo }
