package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/trustmesh/trustmesh/interceptors"
)

// ServerOption configures a server built by [NewGRPCServer] or
// [NewConnectServer].
type ServerOption func(*serverConfig)

type serverConfig struct {
	log             *slog.Logger
	trustDomains    []spiffeid.TrustDomain
	unary           []grpc.UnaryServerInterceptor
	stream          []grpc.StreamServerInterceptor
	grpcOptions     []grpc.ServerOption
	connectOptions  []connect.HandlerOption
	shutdownTimeout time.Duration
	authorizer      *interceptors.Authorizer
	noAuthz         bool
	coverageWarn    bool
	telemetry       *Telemetry
	federated       bool
	rateLimiter     *interceptors.RateLimiter
}

func newServerConfig(opts []ServerOption) *serverConfig {
	c := &serverConfig{
		log:             slog.New(slog.DiscardHandler),
		shutdownTimeout: 10 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithLogger sets the logger for refused handshakes and server life-cycle
// events. By default nothing is logged.
func WithLogger(log *slog.Logger) ServerOption {
	return func(c *serverConfig) {
		if log != nil {
			c.log = log
		}
	}
}

// WithTrustDomains sets the trust domains whose members may connect at all
// (the TLS-level check; per-method authorization comes after). By default
// only the trust domain of the server's own SVID is accepted. Each listed
// domain also needs a bundle in the server's [Credentials].
func WithTrustDomains(tds ...spiffeid.TrustDomain) ServerOption {
	return func(c *serverConfig) { c.trustDomains = append(c.trustDomains, tds...) }
}

// WithFederatedTrustDomains accepts callers from every trust domain whose
// bundle the server's [Credentials] hold (SPIFFE federation: add a domain by
// adding its bundle, e.g. to a certs.FileSource bundle directory); they are
// then authorized per method like anyone else. By default only the trust
// domain of the server's own SVID (or those of [WithTrustDomains]) may
// connect. A caller from a domain without a bundle is always refused, since
// its chain cannot be verified.
func WithFederatedTrustDomains() ServerOption {
	return func(c *serverConfig) { c.federated = true }
}

// WithRateLimiter limits calls per caller SPIFFE ID with l, before
// authorization and before any request is decoded (grpc-go InTapHandle,
// connect-go request gate); callers over their limit get ResourceExhausted.
// By default there is no limit.
func WithRateLimiter(l *interceptors.RateLimiter) ServerOption {
	return func(c *serverConfig) { c.rateLimiter = l }
}

// WithGRPCInterceptors appends grpc-go interceptors to the chain of a
// [GRPCServer]. They run after the identity interceptor, in the order given,
// so they can rely on [identity.FromContext]. By default there are none.
func WithGRPCInterceptors(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) ServerOption {
	return func(c *serverConfig) {
		c.unary = append(c.unary, unary...)
		c.stream = append(c.stream, stream...)
	}
}

// WithGRPCServerOptions adds raw grpc-go server options (stats handlers,
// message size limits, ...) to a [GRPCServer]. They are applied before the
// mesh's own, so transport credentials given here are replaced by the
// mesh's mTLS; interceptors given here run before the mesh's. Do not pass
// grpc.InTapHandle: grpc-go takes only one, and the mesh's authorization
// uses it (grpc-go panics at NewGRPCServer).
func WithGRPCServerOptions(opts ...grpc.ServerOption) ServerOption {
	return func(c *serverConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}

// WithConnectHandlerOptions appends connect-go handler options (interceptors,
// request gates, ...) given to every handler of a [ConnectServer], after the
// mesh's own. By default there are none.
func WithConnectHandlerOptions(opts ...connect.HandlerOption) ServerOption {
	return func(c *serverConfig) { c.connectOptions = append(c.connectOptions, opts...) }
}

// WithShutdownTimeout bounds the graceful stop that follows the end of the
// Serve context: in-flight calls get this long to finish before the server
// closes every connection. The default is 10s.
func WithShutdownTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) {
		if d > 0 {
			c.shutdownTimeout = d
		}
	}
}

// WithAuthorizer authorizes every call with a: on grpc-go in an InTapHandle,
// on connect-go in a request gate, so that a denied call is refused before
// its request is decoded. Health and reflection are authorized like any
// other method. At Serve, every served method must be covered by an allow
// rule (see [WithCoverageWarnings]). A server needs either this option or
// [WithoutAuthorization].
func WithAuthorizer(a *interceptors.Authorizer) ServerOption {
	return func(c *serverConfig) { c.authorizer = a }
}

// WithoutAuthorization builds a server that lets every peer that passed the
// TLS checks (a member of an accepted trust domain) call every method. It
// must be asked for explicitly: without it, a server with no
// [WithAuthorizer] fails to build.
func WithoutAuthorization() ServerOption {
	return func(c *serverConfig) { c.noAuthz = true }
}

// WithCoverageWarnings relaxes the start-up coverage check: methods that no
// allow rule covers are logged as a warning instead of stopping Serve. By
// default they stop it.
func WithCoverageWarnings() ServerOption {
	return func(c *serverConfig) { c.coverageWarn = true }
}

func (c *serverConfig) validate() error {
	switch {
	case c.authorizer == nil && !c.noAuthz:
		return errors.New("mesh: no authorization: pass WithAuthorizer, or WithoutAuthorization to let every trust-domain member call every method")
	case c.authorizer != nil && c.noAuthz:
		return errors.New("mesh: both WithAuthorizer and WithoutAuthorization given")
	}
	return nil
}

// checkCoverage refuses (or, with WithCoverageWarnings, logs) served methods
// that no allow rule covers.
func (c *serverConfig) checkCoverage(methods []string) error {
	if c.authorizer == nil {
		return nil
	}
	var uncovered []string
	for _, m := range methods {
		if !c.authorizer.Covers(m) {
			uncovered = append(uncovered, m)
		}
	}
	if len(uncovered) == 0 {
		return nil
	}
	if c.coverageWarn {
		c.log.Warn("mesh: methods no allow rule covers (callable by no one)", slog.Any("methods", uncovered))
		return nil
	}
	return fmt.Errorf("mesh: no allow rule covers %d served method(s): %s", len(uncovered), strings.Join(uncovered, ", "))
}
