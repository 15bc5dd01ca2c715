package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/rpcerr"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

// Authorizer is the authorization core shared by every adapter: it asks the
// current policy for a decision on (caller, method), writes the audit event
// and turns a denial into an error. Build one with [NewAuthorizer]; it is
// safe for concurrent use.
type Authorizer struct {
	policy     policy.Source
	log        *slog.Logger
	allowEvery uint64 // audit every Nth allow; 0: none
	allowCount *atomic.Uint64
	tracing    *tracing      // nil: no tracing
	tokens     TokenVerifier // nil: token rules refuse every call
	repeats    *repeats      // summarises floods of identical refusals

	txnVerifier *txn.Verifier // nil: transaction tokens are ignored
	txnMinter   *txn.Minter   // non-nil: an edge, minting for calls without one

	proxies *frontProxies // nil: no front proxies (jwtsvid.go)

	noEngine *atomic.Bool // the policy source's last engine was nil (logged); shared by copies, like allowCount
}

// AuthorizerOption configures an [Authorizer] built by [NewAuthorizer].
type AuthorizerOption interface {
	applyToAuthorizer(*authorizerConfig)
}

// authorizerConfig collects the options of an Authorizer, and the errors
// of options given values they cannot use.
type authorizerConfig struct {
	a    *Authorizer
	errs []error
}

type authorizerOption func(*authorizerConfig)

func (o authorizerOption) applyToAuthorizer(c *authorizerConfig) { o(c) }

// WithAuditLogger sets the logger that receives audit events: every denial
// and dry-run denial at Warn, and sampled allows at Info (see
// [WithAuditAllows]). By default audit events are discarded.
//
// A flood of identical refusals (same caller, method, decision and rule)
// is summarised rather than written line by line: the first in each second
// is written in full, and when the second is over one line
// ("authz decision repeated", with repeats=N and "N more like this in the
// last second") counts the rest. Nothing is dropped silently.
func WithAuditLogger(log *slog.Logger) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) {
		if log == nil {
			c.errs = append(c.errs, errors.New("interceptors: WithAuditLogger(nil): pass a logger (slog.New(slog.DiscardHandler) to audit nothing)"))
			return
		}
		c.a.log = log
	})
}

// WithAuditAllows audits one allowed call in every n (1: all of them). By
// default (0) allowed calls are not audited; denials always are.
func WithAuditAllows(n uint64) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) { c.a.allowEvery = n })
}

// NewAuthorizer returns an Authorizer that decides with the engine src
// currently holds (a static engine or a hot-reloading [policy.Watcher]);
// src must hold one now (a nil src, or one whose Engine returns nil, is an
// error; one that loses its engine later has every call denied). A
// policy with rules that require access tokens ([policy.Engine.TokenRules])
// needs [WithTokenVerifier]; without one NewAuthorizer fails. (Should a
// reloaded policy bring such rules anyway, the calls they match are
// refused.)
func NewAuthorizer(src policy.Source, opts ...AuthorizerOption) (*Authorizer, error) {
	if src == nil || src.Engine() == nil {
		return nil, errors.New("interceptors: authorizer needs a policy")
	}
	a := &Authorizer{policy: src, log: slog.New(slog.DiscardHandler), allowCount: new(atomic.Uint64), noEngine: new(atomic.Bool)}
	c := &authorizerConfig{a: a}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("interceptors: NewAuthorizer: nil option")
		}
		o.applyToAuthorizer(c)
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	a.repeats = newRepeats(a.log)
	if err := a.checkPolicySubjects(src.Engine()); err != nil {
		return nil, err
	}
	if err := a.checkPolicyTokens(src.Engine()); err != nil {
		return nil, err
	}
	return a, nil
}

// deniedError is a refused call. Its message names the caller and the
// method, never the policy.
type deniedError struct {
	caller identity.Principal
	method string
}

func (e *deniedError) Error() string {
	return fmt.Sprintf("%s may not call %s", e.caller.ID, clip.Counted(e.method, maxEcho))
}

// authorize decides for caller calling method. It returns nil when the call
// may proceed, errUnauthenticated when there is no caller, a *deniedError
// when the policy refuses it and a *tokenError when the rule that allows it
// requires a token and the call has no valid one. Without tracing and allow
// audits it allocates nothing on the allow path of a call that needs no
// token. carrier (may be nil) holds the request headers, for the span of a
// denied call and the token; with none, the token is read from ctx's gRPC
// metadata.
func (a *Authorizer) authorize(ctx context.Context, carrier propagation.TextMapCarrier, caller identity.Principal, method string) (context.Context, error) {
	if caller.IsZero() {
		return ctx, errUnauthenticated
	}
	// Front proxies (WithFrontProxies, jwtsvid.go): on a connection from
	// one, the caller is the subject of the call's verified JWT-SVID, and
	// ctx records the proxy as via; from any other peer nothing changes.
	if a.proxies != nil {
		var err error
		if ctx, caller, err = a.proxied(ctx, carrier, caller, method); err != nil {
			return ctx, err
		}
	}
	tok, txnErr := a.callTxn(ctx, carrier)
	var subject spiffeid.ID
	if tok != nil {
		subject = tok.Subject()
		ctx = txn.NewContext(ctx, tok)
	}
	e := a.policy.Engine()
	if e == nil {
		a.lostEngine(ctx)
	} else if a.noEngine.Load() {
		a.noEngine.Store(false)
	}
	d := e.DecideFor(method, caller.ID, subject) // a nil engine denies
	if txnErr == nil && d.NeedSubject {
		txnErr = &txnError{msg: "transaction token required for " + clip.Counted(method, maxEcho)}
	}
	var tokenErr error
	if txnErr == nil && d.RequireToken && d.Proceed() {
		if _, viaProxy := ProxiedFromContext(ctx); viaProxy {
			// The authorization header holds the JWT-SVID the caller was
			// taken from: it must not also pass for the access token (a
			// TokenVerifier of the user's own might accept it), and the
			// proxy's certificate is not the caller's to bind one to.
			tokenErr = &tokenError{msg: "token required for " + clip.Counted(method, maxEcho) + ", which cannot be met through a front proxy"}
		} else {
			ctx, tokenErr = a.checkToken(ctx, carrier, caller, method)
		}
	}
	// At an edge, a call without a token gets one. With tracing, it is
	// minted once the server span exists (its txn is then the trace id).
	mint := txnErr == nil && tokenErr == nil && tok == nil && a.txnMinter != nil && d.Proceed()
	// Denials are always audited; allows when sampled.
	audit := d.Outcome != policy.Allowed || (a.allowEvery > 0 && a.allowCount.Add(1)%a.allowEvery == 0)
	if mint && a.tracing == nil {
		var err error
		if ctx, err = a.mintFor(ctx, caller, method, d, audit); err != nil {
			return ctx, err
		}
	}
	if t := a.tracing; t != nil {
		t.count(ctx, d)
		switch {
		case txnErr != nil:
			a.auditTxn(t.refused(ctx, carrier, caller, method, d, "UNAUTHENTICATED", txnErr.Error()), caller, method, d, txnErr)
			return ctx, txnErr
		case d.Outcome == policy.Denied:
			a.audit(t.refused(ctx, carrier, caller, method, d, "PERMISSION_DENIED", "permission denied"), caller, method, d)
			return ctx, &deniedError{caller: caller, method: method}
		case tokenErr != nil:
			a.auditToken(t.refused(ctx, carrier, caller, method, d, "UNAUTHENTICATED", tokenErr.Error()), caller, method, d, tokenErr)
			return ctx, tokenErr
		}
		// Audited once the server span exists, so the event carries its IDs.
		return t.proceed(ctx, a, caller, method, d, audit, mint), nil
	}
	switch {
	case txnErr != nil:
		a.auditTxn(ctx, caller, method, d, txnErr)
		return ctx, txnErr
	case tokenErr != nil:
		a.auditToken(ctx, caller, method, d, tokenErr)
		return ctx, tokenErr
	}
	if audit {
		a.audit(ctx, caller, method, d)
	}
	if d.Outcome == policy.Denied {
		return ctx, &deniedError{caller: caller, method: method}
	}
	return ctx, nil
}

// mintFor mints the edge's transaction token of a call that proceeds. When
// that fails the call ends here, refused with errMint (the cause is the
// server's, not the caller's: logged, not sent), and its decision is
// audited now if it was to be.
func (a *Authorizer) mintFor(ctx context.Context, caller identity.Principal, method string, d policy.Decision, audit bool) (context.Context, error) {
	tok, err := a.mintTxn(ctx, caller, method)
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelError, "authz transaction token not minted",
			slog.String("caller", caller.ID.String()), slog.String("method", clip.Counted(method, maxEcho)), slog.String("error", err.Error()))
		if audit {
			a.audit(ctx, caller, method, d)
		}
		return ctx, errMint
	}
	return txn.NewContext(ctx, tok), nil
}

// lostEngine says, once until the source has an engine again, that the
// policy source returned a nil engine, which denies every call.
func (a *Authorizer) lostEngine(ctx context.Context) {
	if a.noEngine.Swap(true) {
		return
	}
	a.log.LogAttrs(ctx, slog.LevelError, "authz policy source has no engine: every call is refused until it has one",
		slog.String("source", fmt.Sprintf("%T", a.policy)))
}

// audit writes the audit event of one decision: allows at Info, denials
// and dry-run denials at Warn, with the trace and span IDs when ctx holds a
// span.
func (a *Authorizer) audit(ctx context.Context, caller identity.Principal, method string, d policy.Decision) {
	level := slog.LevelWarn
	if d.Outcome == policy.Allowed {
		level = slog.LevelInfo
	} else if !a.repeats.first(repeatKey{caller: caller.ID, method: clip.Counted(method, maxEcho), outcome: d.Outcome, rule: d.Rule, msg: "authz decision"}) {
		return // counted; summarised when its window closes
	}
	attrs := [10]slog.Attr{
		slog.String("caller", caller.ID.String()),
		slog.String("method", clip.Counted(method, maxEcho)),
		slog.String("decision", d.Outcome.String()),
		slog.String("rule", d.Rule),
		slog.Bool("dry_run", d.Outcome == policy.DryRunDenied),
	}
	n := 5
	if via, ok := viaAttr(ctx); ok { // a call through a front proxy (jwtsvid.go)
		attrs[n] = via
		n++
	}
	if tok, ok := txn.FromContext(ctx); ok {
		attrs[n], attrs[n+1] = slog.String("subject", tok.Subject().String()), slog.String("txn", tok.ID())
		n += 2
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs[n], attrs[n+1] = slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())
		n += 2
	}
	a.log.LogAttrs(ctx, level, "authz decision", attrs[:n]...)
}

// grpcError maps an authorization error to a gRPC status.
func grpcError(err error) error {
	if errors.Is(err, errMint) {
		return status.Error(codes.Unavailable, err.Error())
	}
	var denied *deniedError
	if errors.As(err, &denied) {
		return status.Error(codes.PermissionDenied, denied.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

// connectError maps an authorization error to a connect error.
func connectError(err error) *connect.Error {
	if errors.Is(err, errMint) {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	var denied *deniedError
	if errors.As(err, &denied) {
		return connect.NewError(connect.CodePermissionDenied, denied)
	}
	return connect.NewError(connect.CodeUnauthenticated, err)
}

// TapHandle returns a grpc-go InTapHandle that authorizes each call when its
// headers arrive, before the stream exists and before any message is read or
// decoded, so a denied call costs no decode. It needs the mesh's transport
// credentials (the Principal comes from the connection's AuthInfo).
func (a *Authorizer) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		caller, err := principalFromGRPC(ctx)
		if err != nil {
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
		ctx, err = a.authorize(ctx, rpcotel.MDCarrier(info.Header), *caller, info.FullMethodName)
		if err != nil {
			return ctx, grpcError(err)
		}
		return ctx, nil
	}
}

// UnaryServerInterceptor returns a grpc-go unary interceptor that authorizes
// each call, reading the caller from the connection like
// [UnaryServerIdentity] does (so it can run in any position). grpc-go has decoded the
// request by then: prefer [Authorizer.TapHandle] where it can be used.
func (a *Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		caller, err := principalFromGRPC(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		ctx, err = a.authorize(ctx, nil, *caller, info.FullMethod)
		if err != nil {
			return nil, grpcError(err)
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is the streaming form of
// [Authorizer.UnaryServerInterceptor].
func (a *Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		caller, err := principalFromGRPC(ss.Context())
		if err != nil {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		ctx, err := a.authorize(ss.Context(), nil, *caller, info.FullMethod)
		if err != nil {
			return grpcError(err)
		}
		if ctx != ss.Context() {
			ss = &contextStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
}

// HTTPHandler returns net/http middleware that authorizes every request to
// next before next sees it: the procedure is the request path
// ("/pkg.Service/Method", the same for gRPC, gRPC-Web, Connect POST and
// Connect GET), the caller the verified peer that the mesh's HTTP layer put
// in the request context (see [identity.FromContext]), so a denied call is
// refused before any message is read or decoded, whichever handler would
// have served it. A request without a verified caller is refused with
// Unauthenticated; a denied one with PermissionDenied, in the protocol the
// client speaks (a request that is no RPC gets a plain 401 or 403). The
// mesh package's connect-go server puts it in front of every handler it
// serves.
func (a *Authorizer) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := identity.FromContext(r.Context())
		ctx, err := a.authorize(r.Context(), propagation.HeaderCarrier(r.Header), caller, r.URL.Path)
		if err != nil {
			rpcerr.Write(w, r, connectError(err))
			return
		}
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// Covers reports whether the policy in force has an allow rule for method.
func (a *Authorizer) Covers(method string) bool { return a.policy.Engine().Covers(method) }

// Policy returns the source of the policy a decides with.
func (a *Authorizer) Policy() policy.Source { return a.policy }
