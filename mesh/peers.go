package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// A connection lives no longer than the credentials it was authorized with.
// peers is a server's registry of its live connections: each is verified
// once, at the handshake (VerifyConnection, resumed sessions included), and
// then
//   - closed when the earliest NotAfter of the peer's verified chain passes
//     (a connect-go server first asks the client to go away: see expiring);
//   - re-verified every recheck interval against the bundles as they are
//     then, and closed when it no longer verifies (a CA dropped from the
//     bundle, a trust domain no longer accepted).
type peers struct {
	bundles   x509bundle.Source
	authorize tlsconfig.Authorizer
	log       *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*peerConn // by the raw (pre-TLS) connection
}

// peerConn is one live connection of a server.
type peerConn struct {
	raw   net.Conn
	state authn.Conn // the verified peer, for the HTTP layer

	expiring atomic.Bool // the peer's certificate expires within goAwayLead

	mu     sync.Mutex
	chain  []*x509.Certificate // as presented, leaf first; set at the handshake
	timer  *time.Timer         // closes raw at expiry
	goaway *time.Timer         // sets expiring
}

// goAwayLead is how long before its peer's certificate expires a connect-go
// server starts answering "Connection: close" (an HTTP/2 GOAWAY), so that
// the client moves to a new connection before this one is closed.
const goAwayLead = 2 * time.Second

func newPeers(bundles x509bundle.Source, authorize tlsconfig.Authorizer, log *slog.Logger) *peers {
	return &peers{bundles: bundles, authorize: authorize, log: log, conns: map[net.Conn]*peerConn{}}
}

// conn returns the entry of raw, creating it.
func (p *peers) conn(raw net.Conn) *peerConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc, ok := p.conns[raw]
	if !ok {
		pc = &peerConn{raw: raw}
		p.conns[raw] = pc
	}
	return pc
}

// lookup returns the entry of raw, or nil.
func (p *peers) lookup(raw net.Conn) *peerConn {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[raw]
}

// forget drops raw's entry and stops its timers.
func (p *peers) forget(raw net.Conn) {
	if p == nil {
		return
	}
	p.mu.Lock()
	pc := p.conns[raw]
	delete(p.conns, raw)
	p.mu.Unlock()
	if pc != nil {
		pc.stop()
	}
}

func (pc *peerConn) stop() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.timer != nil {
		pc.timer.Stop()
	}
	if pc.goaway != nil {
		pc.goaway.Stop()
	}
}

// tlsConfig returns base with a per-connection VerifyConnection: the peer's
// chain is verified as an X.509-SVID in role, then authorized, and the
// result recorded in the connection's entry with its expiry scheduled.
func (p *peers) tlsConfig(base *tls.Config, role identity.Role) *tls.Config {
	cfg := base.Clone()
	cfg.VerifyConnection = nil
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		pc := p.conn(hello.Conn)
		c := base.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			pr, chains, err := verifyChain(cs.PeerCertificates, p.bundles, role, p.authorize)
			if err != nil {
				return err
			}
			pc.admit(pr, cs.PeerCertificates, chains, p.log)
			return nil
		}
		return c, nil
	}
	return cfg
}

// admit records the verified peer and schedules the end of the connection
// at the earliest NotAfter of the chains that verified it.
func (pc *peerConn) admit(pr identity.Principal, chain []*x509.Certificate, verified [][]*x509.Certificate, log *slog.Logger) {
	pc.state.SetPrincipal(pr)
	notAfter := chainsExpiry(verified)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.chain = chain
	if pc.timer != nil { // a renegotiation cannot happen in TLS 1.3; be safe
		pc.timer.Stop()
		pc.goaway.Stop()
	}
	until := time.Until(notAfter)
	pc.goaway = time.AfterFunc(until-goAwayLead, func() { pc.expiring.Store(true) })
	pc.timer = time.AfterFunc(until, func() {
		log.Info("mesh: closing connection: the peer's certificate expired",
			slog.String("peer", pr.ID.String()), slog.String("remote", pc.raw.RemoteAddr().String()),
			slog.Time("not_after", notAfter))
		_ = pc.raw.Close()
	})
}

// recheck re-verifies every live connection against the bundles as they are
// now and closes those that no longer verify.
func (p *peers) recheck(role identity.Role) {
	p.mu.Lock()
	live := make([]*peerConn, 0, len(p.conns))
	for _, pc := range p.conns {
		live = append(live, pc)
	}
	p.mu.Unlock()
	for _, pc := range live {
		pc.mu.Lock()
		chain := pc.chain
		pc.mu.Unlock()
		if chain == nil {
			continue // handshake not done yet
		}
		if _, _, err := verifyChain(chain, p.bundles, role, p.authorize); err != nil {
			p.log.Warn("mesh: closing connection: the peer no longer verifies",
				slog.String("remote", pc.raw.RemoteAddr().String()), slog.String("error", err.Error()))
			_ = pc.raw.Close()
		}
	}
}

// watch re-verifies the live connections every interval until ctx ends.
func (p *peers) watch(ctx context.Context, interval time.Duration, role identity.Role) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.recheck(role)
		}
	}
}

// chainsExpiry is when the peer stops verifying by time alone: the latest,
// over the verified chains, of each chain's earliest NotAfter.
func chainsExpiry(chains [][]*x509.Certificate) time.Time {
	var latest time.Time
	for _, chain := range chains {
		var first time.Time
		for _, c := range chain {
			if first.IsZero() || c.NotAfter.Before(first) {
				first = c.NotAfter
			}
		}
		if first.After(latest) {
			latest = first
		}
	}
	return latest
}

// expiringConn closes itself when the peer's certificate expires: the
// client side of a mesh connection (the server side is kept in peers).
type expiringConn struct {
	net.Conn
	timer *time.Timer
}

func newExpiringConn(conn net.Conn, verified [][]*x509.Certificate) *expiringConn {
	ec := &expiringConn{Conn: conn}
	ec.timer = time.AfterFunc(time.Until(chainsExpiry(verified)), func() { _ = conn.Close() })
	return ec
}

func (c *expiringConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}
