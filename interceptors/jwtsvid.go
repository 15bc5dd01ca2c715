package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/policy"
)

// FrontProxies configures [WithFrontProxies]: which mTLS peers are front
// proxies, and how the JWT-SVIDs they forward are verified.
type FrontProxies struct {
	// IDs are the SPIFFE IDs of the front proxies: the mTLS peers (an L7
	// load balancer that terminates the callers' TLS, say) whose calls are
	// decided on the JWT-SVID they carry. At least one is required.
	IDs []spiffeid.ID
	// Bundles are the SPIFFE bundles whose jwt-svid keys verify the
	// JWT-SVIDs (e.g. a certs.WorkloadSource, or a bundle read from a
	// development CA's bundle.json). Required.
	Bundles identity.BundleSource
	// Audience is the value a JWT-SVID's aud must contain: the server's own
	// SPIFFE ID (the mesh package sets it from the server's SVID).
	// Required.
	Audience spiffeid.ID
}

// WithFrontProxies makes the Authorizer take the caller of a call that
// arrives over a connection from one of fp.IDs from the JWT-SVID the call
// carries ("authorization: Bearer TOKEN", gRPC metadata or HTTP header;
// JWT-SVID 5), verified by [identity.VerifyJWTSVID] against fp.Bundles for
// the audience fp.Audience: the policy then decides on the JWT-SVID's
// subject, audit events record it as caller and the proxy as via, and
// handlers find both with [ProxiedFromContext] ([identity.FromContext]
// still returns the mTLS peer, the proxy). Such a call without a JWT-SVID,
// with more than one authorization header, or with one that does not
// verify is refused with Unauthenticated ("JWT-SVID required ...",
// "invalid JWT-SVID: ..."), so that no caller borrows the proxy's own
// rights. A JWT-SVID in the authorization header leaves no room for an
// access token there: rules that require one ([WithTokenVerifier]) refuse
// such calls.
//
// On a connection from any other peer a JWT-SVID changes nothing: the
// caller is the mTLS peer, as without this option. By default there are
// no front proxies.
func WithFrontProxies(fp FrontProxies) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) {
		p, err := newFrontProxies(fp)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.a.proxies = p
	})
}

// WithFrontProxies returns a copy of a that also takes callers from the
// JWT-SVIDs forwarded by fp's proxies, as the option [WithFrontProxies]
// does; a's own front proxies, if any, are replaced. The mesh package
// uses it to add the server's SPIFFE ID as the audience.
func (a *Authorizer) WithFrontProxies(fp FrontProxies) (*Authorizer, error) {
	p, err := newFrontProxies(fp)
	if err != nil {
		return nil, err
	}
	c := *a
	c.proxies = p
	return &c, nil
}

// frontProxies is the compiled [FrontProxies].
type frontProxies struct {
	ids      map[spiffeid.ID]struct{}
	bundles  identity.BundleSource
	audience string
}

func newFrontProxies(fp FrontProxies) (*frontProxies, error) {
	switch {
	case len(fp.IDs) == 0:
		return nil, errors.New("interceptors: WithFrontProxies: no front proxy SPIFFE IDs")
	case fp.Bundles == nil:
		return nil, errors.New("interceptors: WithFrontProxies: no bundles to verify JWT-SVIDs with")
	case fp.Audience.IsZero():
		return nil, errors.New("interceptors: WithFrontProxies: no audience (the server's own SPIFFE ID)")
	}
	p := &frontProxies{ids: make(map[spiffeid.ID]struct{}, len(fp.IDs)), bundles: fp.Bundles, audience: fp.Audience.String()}
	for _, id := range fp.IDs {
		if id.IsZero() {
			return nil, errors.New("interceptors: WithFrontProxies: a zero SPIFFE ID among the front proxies")
		}
		p.ids[id] = struct{}{}
	}
	return p, nil
}

// Proxied is what the Authorizer proved about a call that came through a
// front proxy (see [WithFrontProxies]).
type Proxied struct {
	// Caller is the verified JWT-SVID the call carried; its ID is the
	// caller the policy decided on.
	Caller *identity.JWTSVID
	// Via is the front proxy, the mTLS peer of the connection.
	Via identity.Principal
}

type proxiedKey struct{}

// ProxiedFromContext returns what the Authorizer proved about the call
// being served when it came through a front proxy, and whether it did.
func ProxiedFromContext(ctx context.Context) (Proxied, bool) {
	p, ok := ctx.Value(proxiedKey{}).(Proxied)
	return p, ok
}

// jwtError is a call from a front proxy refused for its JWT-SVID.
type jwtError struct{ msg string }

func (e *jwtError) Error() string { return e.msg }

// proxied returns the caller of a call from the front proxy peer: the
// subject of its JWT-SVID, with ctx recording both. A call from any other
// peer is returned unchanged. A refusal is audited here.
func (a *Authorizer) proxied(ctx context.Context, carrier propagation.TextMapCarrier, peer identity.Principal, method string) (context.Context, identity.Principal, error) {
	if _, ok := a.proxies.ids[peer.ID]; !ok {
		return ctx, peer, nil
	}
	raw, err := bearer(authorization(ctx, carrier))
	switch {
	case err != nil:
		err = &jwtError{msg: "invalid JWT-SVID: " + err.Error()}
	case raw == "":
		err = &jwtError{msg: fmt.Sprintf("JWT-SVID required: calls through front proxy %s must carry one (authorization: Bearer)", peer.ID)}
	}
	var svid *identity.JWTSVID
	if err == nil {
		if svid, err = identity.VerifyJWTSVID(raw, a.proxies.bundles, a.proxies.audience, time.Now()); err != nil {
			err = &jwtError{msg: "invalid JWT-SVID: " + clip.Counted(err.Error(), maxEcho)}
		}
	}
	if err != nil {
		a.auditJWT(ctx, peer, method, err)
		return ctx, peer, err
	}
	return context.WithValue(ctx, proxiedKey{}, Proxied{Caller: svid, Via: peer}), identity.Principal{ID: svid.ID}, nil
}

// viaAttr returns the via attribute of the audit events of a proxied
// call.
func viaAttr(ctx context.Context) (slog.Attr, bool) {
	if p, ok := ProxiedFromContext(ctx); ok {
		return slog.String("via", p.Via.ID.String()), true
	}
	return slog.Attr{}, false
}

// auditJWT writes the audit event of a call from a front proxy refused for
// its JWT-SVID, at Warn: there is no verified caller, only the proxy it
// came via.
func (a *Authorizer) auditJWT(ctx context.Context, via identity.Principal, method string, err error) {
	if !a.repeats.first(repeatKey{caller: via.ID, method: clip.Counted(method, maxEcho), outcome: policy.Denied, msg: "authz JWT-SVID refused"}) {
		return
	}
	attrs := []slog.Attr{
		slog.String("via", via.ID.String()),
		slog.String("method", clip.Counted(method, maxEcho)),
		slog.String("decision", policy.Denied.String()),
		slog.String("error", strings.TrimPrefix(err.Error(), "invalid JWT-SVID: ")),
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "authz JWT-SVID refused", attrs...)
}
