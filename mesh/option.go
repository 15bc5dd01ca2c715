package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/policy"
)

// GRPCServerOption configures a server built by [NewGRPCServer]. Options
// that only make sense on grpc-go ([WithGRPCServerOptions],
// [WithGRPCInterceptors]) are GRPCServerOptions only, so passing one to
// [NewConnectServer] does not compile instead of being ignored.
type GRPCServerOption interface {
	applyToGRPCServer(*serverConfig)
}

// ConnectServerOption configures a server built by [NewConnectServer].
// Options that only make sense on connect-go ([WithConnectHandlerOptions])
// are ConnectServerOptions only.
type ConnectServerOption interface {
	applyToConnectServer(*serverConfig)
}

// ServerOption configures a server of either stack: it is both a
// [GRPCServerOption] and a [ConnectServerOption].
type ServerOption interface {
	GRPCServerOption
	ConnectServerOption
}

// serverOption applies to both stacks.
type serverOption func(*serverConfig)

func (o serverOption) applyToGRPCServer(c *serverConfig)    { o(c) }
func (o serverOption) applyToConnectServer(c *serverConfig) { o(c) }

// grpcServerOption applies to grpc-go servers only.
type grpcServerOption func(*serverConfig)

func (o grpcServerOption) applyToGRPCServer(c *serverConfig) { o(c) }

// connectServerOption applies to connect-go servers only.
type connectServerOption func(*serverConfig)

func (o connectServerOption) applyToConnectServer(c *serverConfig) { o(c) }

// WithServerOptions composes options of both stacks into one, for a list
// built once and given to servers of either kind. By default it is empty.
func WithServerOptions(opts ...ServerOption) ServerOption {
	return serverOption(func(c *serverConfig) {
		for _, o := range opts {
			if o == nil {
				c.errs = append(c.errs, errors.New("mesh: WithServerOptions: nil option"))
				continue
			}
			o.applyToGRPCServer(c) // every ServerOption is a serverOption: the same function as applyToConnectServer
		}
	})
}

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
	lastChecked     atomic.Pointer[policy.Engine] // the engine checkCoverage last warned of
	telemetry       *Telemetry
	federated       bool
	rateLimiter     *interceptors.RateLimiter
	maxStreams      uint32
	streamWorkers   *uint32 // WithStreamWorkers; nil: DefaultStreamWorkers
	recheck         time.Duration
	noReflection    bool
	frontProxies    *frontProxyConfig // WithFrontProxies (jwtsvid.go); nil: none
	errs            []error           // from options given bad values
}

// DefaultRecheckInterval is how often a server re-verifies its live
// connections against its trust bundles, unless [WithRecheckInterval]
// says otherwise.
const DefaultRecheckInterval = 10 * time.Second

// WithRecheckInterval sets how often a server re-verifies the peer of every
// live connection against the trust bundles as they are then, closing the
// connections whose peer no longer verifies (its CA was removed from the
// bundle, say). Each connection is also closed when its peer's
// certificate expires, whatever the interval. d must be positive; the
// default is [DefaultRecheckInterval].
func WithRecheckInterval(d time.Duration) ServerOption {
	return serverOption(func(c *serverConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("mesh: WithRecheckInterval(%v): must be positive", d))
			return
		}
		c.recheck = d
	})
}

// WithoutReflection serves no gRPC server reflection (grpc.reflection.v1
// and v1alpha). By default a server reflects the files of the services it
// serves, and their imports, to callers the policy allows.
func WithoutReflection() ServerOption {
	return serverOption(func(c *serverConfig) { c.noReflection = true })
}

// DefaultMaxConcurrentStreams is how many calls one client connection may
// have open at once on a mesh server of either stack, unless
// [WithMaxConcurrentStreams] says otherwise: net/http's HTTP/2 default,
// which grpc-go (unlimited by default) now shares.
const DefaultMaxConcurrentStreams = 250

// WithMaxConcurrentStreams bounds how many calls (streams) one client
// connection may have open at once; a client that opens more waits for one
// to end (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS), so that one caller cannot
// tie up a goroutine per stream without bound. n must be at least 1. The
// default is [DefaultMaxConcurrentStreams].
func WithMaxConcurrentStreams(n uint32) ServerOption {
	return serverOption(func(c *serverConfig) {
		if n == 0 {
			c.errs = append(c.errs, errors.New("mesh: WithMaxConcurrentStreams(0): must be at least 1"))
			return
		}
		c.maxStreams = n
	})
}

func defaultServerConfig() *serverConfig {
	return &serverConfig{
		log:             slog.New(slog.DiscardHandler),
		shutdownTimeout: 10 * time.Second,
		maxStreams:      DefaultMaxConcurrentStreams,
		recheck:         DefaultRecheckInterval,
	}
}

func newGRPCServerConfig(opts []GRPCServerOption) (*serverConfig, error) {
	c := defaultServerConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("mesh: NewGRPCServer: nil option")
		}
		o.applyToGRPCServer(c)
	}
	return c, c.validate()
}

func newConnectServerConfig(opts []ConnectServerOption) (*serverConfig, error) {
	c := defaultServerConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("mesh: NewConnectServer: nil option")
		}
		o.applyToConnectServer(c)
	}
	return c, c.validate()
}

// WithLogger sets the logger for refused handshakes and server life-cycle
// events. By default nothing is logged.
func WithLogger(log *slog.Logger) ServerOption {
	return serverOption(func(c *serverConfig) {
		if log == nil {
			c.errs = append(c.errs, errors.New("mesh: WithLogger(nil): pass a logger (slog.New(slog.DiscardHandler) to log nothing)"))
			return
		}
		c.log = log
	})
}

// WithTrustDomains sets the trust domains whose members may connect at all
// (the TLS-level check; per-method authorization comes after). By default
// only the trust domain of the server's own SVID is accepted. Each listed
// domain also needs a bundle in the server's [Credentials].
func WithTrustDomains(tds ...spiffeid.TrustDomain) ServerOption {
	return serverOption(func(c *serverConfig) {
		if len(tds) == 0 {
			c.errs = append(c.errs, errors.New("mesh: WithTrustDomains(): no trust domain given (leave the option out to accept the server's own)"))
			return
		}
		for _, td := range tds {
			if td.IsZero() {
				c.errs = append(c.errs, errors.New("mesh: WithTrustDomains: the zero trust domain (use spiffeid.RequireTrustDomainFromString)"))
				return
			}
		}
		c.trustDomains = append(c.trustDomains, tds...)
	})
}

// WithFederatedTrustDomains accepts callers from every trust domain whose
// bundle the server's [Credentials] hold (SPIFFE federation: add a domain by
// adding its bundle, e.g. to a certs.FileSource bundle directory); they are
// then authorized per method like anyone else. By default only the trust
// domain of the server's own SVID (or those of [WithTrustDomains]) may
// connect. A caller from a domain without a bundle is always refused, since
// its chain cannot be verified.
func WithFederatedTrustDomains() ServerOption {
	return serverOption(func(c *serverConfig) { c.federated = true })
}

// WithRateLimiter limits calls per caller SPIFFE ID (the mTLS peer) with l,
// before authorization and before any request is decoded (grpc-go
// InTapHandle; connect-go the server's HTTP layer, on every path it
// answers); callers over their limit get ResourceExhausted. By default
// there is no limit.
func WithRateLimiter(l *interceptors.RateLimiter) ServerOption {
	return serverOption(func(c *serverConfig) {
		if l == nil {
			c.errs = append(c.errs, errors.New("mesh: WithRateLimiter(nil): build one with interceptors.NewRateLimiter"))
			return
		}
		c.rateLimiter = l
	})
}

// WithGRPCInterceptors appends grpc-go interceptors to the chain of a
// [GRPCServer]. They run after the identity interceptor, in the order given,
// so they can rely on [identity.FromContext]. By default there are none.
func WithGRPCInterceptors(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) GRPCServerOption {
	return grpcServerOption(func(c *serverConfig) {
		c.unary = append(c.unary, unary...)
		c.stream = append(c.stream, stream...)
	})
}

// WithGRPCServerOptions adds raw grpc-go server options (stats handlers,
// message size limits, ...) to a [GRPCServer]. They are applied before the
// mesh's own, which win. Transport credentials (grpc.Creds) are the mesh's
// mTLS: NewGRPCServer refuses options that set them, as [DialGRPC] refuses
// them in [WithDialOptions]. Interceptors given here run before the mesh's (a traced
// server reads the caller's trace context from the metadata as it was
// received, so they cannot change it). Do not pass grpc.InTapHandle:
// grpc-go takes only one, and the mesh's telemetry, rate limit and
// authorization use it (NewGRPCServer returns an error saying so).
func WithGRPCServerOptions(opts ...grpc.ServerOption) GRPCServerOption {
	return grpcServerOption(func(c *serverConfig) {
		for i, o := range opts {
			if o == nil {
				c.errs = append(c.errs, fmt.Errorf("mesh: WithGRPCServerOptions: option %d is nil", i))
				return
			}
		}
		c.grpcOptions = append(c.grpcOptions, opts...)
	})
}

// MaxStreamWorkers is the most goroutines [WithStreamWorkers] may keep.
// Each holds a stack, grown to what its calls needed, for as long as the
// server serves; a call that finds every worker busy gets its own
// goroutine anyway, so more workers than calls in flight only hold memory.
const MaxStreamWorkers = 4096

// WithStreamWorkers sets how many goroutines a [GRPCServer] keeps to serve
// calls on (grpc.NumStreamWorkers; see [DefaultStreamWorkers] for why it
// keeps any): 0 gives each call its own goroutine, grpc-go's default, which
// a handler that changes its goroutine's or thread's state needs (see
// [NewGRPCServer]). n above [MaxStreamWorkers] is an error. A
// grpc.NumStreamWorkers given in [WithGRPCServerOptions] wins over this,
// unchecked, as on a grpc.Server: prefer this option.
func WithStreamWorkers(n int) GRPCServerOption {
	return grpcServerOption(func(c *serverConfig) {
		if n < 0 || n > MaxStreamWorkers {
			c.errs = append(c.errs, fmt.Errorf("mesh: WithStreamWorkers(%d): want 0 (a goroutine per call) to %d", n, MaxStreamWorkers))
			return
		}
		w := uint32(n)
		c.streamWorkers = &w
	})
}

// WithConnectHandlerOptions appends connect-go handler options (interceptors,
// request gates, ...) given to every handler of a [ConnectServer], after the
// mesh's own. By default there are none.
func WithConnectHandlerOptions(opts ...connect.HandlerOption) ConnectServerOption {
	return connectServerOption(func(c *serverConfig) { c.connectOptions = append(c.connectOptions, opts...) })
}

// WithShutdownTimeout bounds the graceful stop that follows the end of the
// Serve context: in-flight calls get this long to finish before the server
// closes every connection. The default is 10s.
func WithShutdownTimeout(d time.Duration) ServerOption {
	return serverOption(func(c *serverConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("mesh: WithShutdownTimeout(%v): must be positive", d))
			return
		}
		c.shutdownTimeout = d
	})
}

// WithAuthorizer authorizes every call with a: on grpc-go in an InTapHandle,
// on connect-go in the server's HTTP layer in front of every handler, so
// that a denied call is refused before its request is decoded. Health and reflection are authorized like any
// other method. At Serve, every served method must be covered by an allow
// rule, and every deny rule that applies here must match a served method
// (see [WithCoverageWarnings]). A server needs either this option or
// [WithoutAuthorization].
func WithAuthorizer(a *interceptors.Authorizer) ServerOption {
	return serverOption(func(c *serverConfig) {
		switch {
		case a == nil:
			c.errs = append(c.errs, errors.New("mesh: WithAuthorizer(nil): build one with interceptors.NewAuthorizer"))
			return
		case a.Policy() == nil:
			c.errs = append(c.errs, errors.New("mesh: WithAuthorizer: an Authorizer with no policy (a zero interceptors.Authorizer{}): build one with interceptors.NewAuthorizer"))
			return
		}
		c.authorizer = a
	})
}

// WithoutAuthorization builds a server that lets every peer that passed the
// TLS checks (a member of an accepted trust domain) call every method. It
// must be asked for explicitly: without it, a server with no
// [WithAuthorizer] fails to build.
func WithoutAuthorization() ServerOption {
	return serverOption(func(c *serverConfig) { c.noAuthz = true })
}

// WithCoverageWarnings relaxes the start-up and reload checks of the
// policy against the served methods: methods that no allow rule covers,
// and deny rules that match no served method, are logged as a warning
// instead of stopping Serve (or rejecting the reload); both, so give the
// server a [WithLogger] too, or they are reported nowhere. By default they
// stop it: an uncovered method is callable by no one, and a deny rule that
// matches nothing is most often a typo in its method, which lets the
// callers it was meant to stop through a broader allow rule. A deny rule
// written for other servers says so with at: and is not checked here.
func WithCoverageWarnings() ServerOption {
	return serverOption(func(c *serverConfig) { c.coverageWarn = true })
}

func (c *serverConfig) validate() error {
	if len(c.errs) > 0 {
		return errors.Join(c.errs...)
	}
	switch {
	case c.authorizer == nil && !c.noAuthz:
		return errors.New("mesh: no authorization: pass WithAuthorizer, or WithoutAuthorization to let every trust-domain member call every method")
	case c.authorizer != nil && c.noAuthz:
		return errors.New("mesh: both WithAuthorizer and WithoutAuthorization given")
	}
	return nil
}

// checkCoverage refuses (or, with WithCoverageWarnings, logs) served methods
// that no allow rule covers and deny rules that match none of them, in the
// policy in force.
func (c *serverConfig) checkCoverage(methods []string) error {
	if c.authorizer == nil {
		return nil
	}
	e := c.authorizer.Policy().Engine() // one snapshot for both checks
	missing, unused := uncovered(e.Covers, methods), e.UnusedDenies(methods)
	if !c.coverageWarn {
		return coverageError(missing, unused, false)
	}
	// Check and then Serve check the same engine: its warnings once.
	if c.lastChecked.Swap(e) == e {
		return nil
	}
	if len(missing) > 0 {
		c.log.Warn("mesh: methods no allow rule covers (callable by no one)", slog.Any("methods", missing))
	}
	c.warnUnusedDenies(unused, "deny rules")
	return nil
}

// coverageError is the error for served methods no allow rule covers and
// deny rules that match none of them, both at once so that one restart
// fixes both; nil when there are neither. reloaded says the policy is one
// being reloaded rather than the one a server starts with.
func coverageError(missing, unused []string, reloaded bool) error {
	var errs []string
	if len(missing) > 0 {
		if reloaded {
			errs = append(errs, fmt.Sprintf("mesh: the reloaded policy leaves %d served method(s) with no allow rule: %s", len(missing), strings.Join(missing, ", ")))
		} else {
			errs = append(errs, fmt.Sprintf("mesh: no allow rule covers %d served method(s): %s (%s)", len(missing), strings.Join(missing, ", "), coverageHint(missing)))
		}
	}
	if len(unused) > 0 {
		whose := "the policy's"
		if reloaded {
			whose = "the reloaded policy's"
		}
		errs = append(errs, fmt.Sprintf("mesh: %s deny rule(s) %s match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for other servers says so with at:; WithCoverageWarnings only logs this)",
			whose, strings.Join(unused, ", ")))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// coverageHint says how to cover the missing methods: the standard ones
// (health, reflection) have their own helpers.
func coverageHint(missing []string) string {
	const base = "add allow rules for them to the policy or the protos' trustmesh.v1 access options, or pass WithCoverageWarnings to serve them to no one"
	standard := GRPCStandardMethods()
	for _, m := range missing {
		if slices.Contains(standard, m) {
			return base + "; health and reflection are covered by merging mesh.AllowStandardMethods(callers...) into the policy, and WithoutReflection serves no reflection"
		}
	}
	return base
}

// warnUnusedDenies logs the deny rules that match no served method (with
// WithCoverageWarnings); what names them in the message.
func (c *serverConfig) warnUnusedDenies(unused []string, what string) {
	if len(unused) > 0 {
		c.log.Warn("mesh: "+what+" match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for another server says so with at:)",
			slog.Any("rules", unused))
	}
}

// uncovered returns the methods that covers does not cover.
func uncovered(covers func(string) bool, methods []string) []string {
	var out []string
	for _, m := range methods {
		if !covers(m) {
			out = append(out, m)
		}
	}
	return out
}

// reloadChecker is a policy source whose reloads can be vetoed, like
// *policy.Watcher.
type reloadChecker interface {
	AddCheck(check func(*policy.Engine) error) (remove func())
}

// guardReloads makes the policy source of a (when it reloads) reject a
// policy that would leave one of methods uncovered or has deny rules that
// match none of them, or with WithCoverageWarnings log it, as at start; it
// returns the function that undoes it. Serve calls it as it starts;
// without authorization (a nil a) it logs that every method is open, and
// it logs a policy in dry-run (at start and on each reload to one), so
// that a WithoutAuthorization or a dry_run left in by mistake shows in the
// log.
func (c *serverConfig) guardReloads(a *interceptors.Authorizer, methods []string) (release func()) {
	if a == nil {
		c.log.Warn("mesh: serving without authorization (WithoutAuthorization): every peer of an accepted trust domain may call every method",
			slog.Int("methods", len(methods)))
		return func() {}
	}
	warnDryRun := func(e *policy.Engine) {
		if e.DryRun() {
			c.log.Warn("mesh: the policy is in dry-run (dry_run: true): denials are logged, not enforced; every call is allowed")
		}
	}
	warnDryRun(a.Policy().Engine())
	rc, ok := a.Policy().(reloadChecker)
	if !ok {
		return func() {} // a static engine never changes
	}
	return rc.AddCheck(func(e *policy.Engine) error {
		missing, unused := uncovered(e.Covers, methods), e.UnusedDenies(methods)
		if !c.coverageWarn {
			if err := coverageError(missing, unused, true); err != nil {
				return err
			}
		} else if len(missing) > 0 {
			c.log.Warn("mesh: reloaded policy covers no allow rule for some served methods (callable by no one)", slog.Any("methods", missing))
		}
		warnDryRun(e)
		c.warnUnusedDenies(unused, "a policy being reloaded: its deny rules")
		return nil
	})
}
