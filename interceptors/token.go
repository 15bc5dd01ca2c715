package interceptors

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/tokens"
)

// TokenVerifier checks the access token a call presents against the
// client certificate of its connection, as of now. [*tokens.Verifier] is
// the implementation; an error says, in one line, why the token is
// refused.
type TokenVerifier interface {
	Verify(raw string, leaf *x509.Certificate, now time.Time) (tokens.Claims, error)
}

// WithTokenVerifier sets the verifier of the certificate-bound access
// tokens that policy rules may require ([policy.Rule.RequireToken]): such a
// call must carry "authorization: Bearer TOKEN" (gRPC metadata or HTTP
// header) with a token that v accepts for the caller's certificate and
// whose subject (sub) is the caller's SPIFFE ID, or it is refused with
// Unauthenticated; the token's claims are then in the call's context
// ([tokens.FromContext]). The subject is checked here whatever v checks. Calls no token rule matches are
// not affected, and cost nothing more. By default (and with a nil v) there
// is no verifier, and [NewAuthorizer] refuses a policy with token rules.
func WithTokenVerifier(v TokenVerifier) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) { c.a.tokens = v })
}

// checkPolicyTokens fails when e has rules that require tokens and a has
// no verifier for them.
func (a *Authorizer) checkPolicyTokens(e *policy.Engine) error {
	if rules := e.TokenRules(); len(rules) > 0 && a.tokens == nil {
		return fmt.Errorf("interceptors: policy rule %s requires an access token, but no token verifier is configured (WithTokenVerifier)", rules[0])
	}
	return nil
}

// tokenError is a call refused for its token. Its message says what is
// wrong with the token (never what the policy is); the client may see it.
type tokenError struct {
	msg    string
	reason error // may be nil
}

func (e *tokenError) Error() string { return e.msg }

func (e *tokenError) Unwrap() error { return e.reason }

// checkToken verifies the bearer token of a call that a token rule
// matched, and returns ctx with its claims. carrier holds the call's
// headers (rpcotel.MDCarrier, propagation.HeaderCarrier), or is nil for a grpc-go
// interceptor, which reads the metadata from ctx.
func (a *Authorizer) checkToken(ctx context.Context, carrier propagation.TextMapCarrier, caller identity.Principal, method string) (context.Context, error) {
	if a.tokens == nil {
		return ctx, &tokenError{msg: fmt.Sprintf("token required for %s, but this server verifies no tokens", clip.Counted(method, maxEcho))}
	}
	raw, err := bearer(authorization(ctx, carrier))
	switch {
	case err != nil:
		return ctx, &tokenError{msg: "invalid token: " + err.Error(), reason: err}
	case raw == "":
		return ctx, &tokenError{msg: "token required for " + clip.Counted(method, maxEcho)}
	}
	claims, err := a.tokens.Verify(raw, caller.Leaf, time.Now())
	if err != nil {
		return ctx, &tokenError{msg: "invalid token: " + strings.TrimPrefix(err.Error(), "tokens: "), reason: err}
	}
	// tokens.Verifier checks this too; a verifier of the user's own might
	// not, and a token is never worth more than its subject's identity.
	if claims.Subject != caller.ID.String() {
		return ctx, &tokenError{msg: fmt.Sprintf("invalid token: token is for subject %q, not the caller %q", clip.String(claims.Subject, maxTokenEcho), caller.ID)}
	}
	return tokens.NewContext(ctx, claims), nil
}

// maxTokenEcho bounds how much of a string read from a token goes into an
// error the client sees: it is cut with [clip.String] to maxTokenEcho
// bytes on a rune boundary and marked "..." when longer.
const maxTokenEcho = 128

// authorization returns the values of a call's authorization header.
func authorization(ctx context.Context, carrier propagation.TextMapCarrier) []string {
	switch c := carrier.(type) {
	case rpcotel.MDCarrier:
		return metadata.MD(c)["authorization"]
	case propagation.HeaderCarrier:
		return http.Header(c).Values("Authorization")
	case nil:
		return metadata.ValueFromIncomingContext(ctx, "authorization")
	default:
		if v := c.Get("authorization"); v != "" {
			return []string{v}
		}
		return nil
	}
}

var (
	errManyAuthorization = errors.New("more than one authorization header")
	errNotBearer         = errors.New(`authorization header is not "Bearer TOKEN"`)
)

// bearer returns the token of a Bearer authorization header (RFC 6750), or
// "" when there is none.
func bearer(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errManyAuthorization
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errNotBearer
	}
	return strings.TrimSpace(token), nil
}

// auditToken writes the audit event of a call refused for its token, at
// Warn, with the trace and span IDs when ctx holds a span.
func (a *Authorizer) auditToken(ctx context.Context, caller identity.Principal, method string, d policy.Decision, err error) {
	if !a.repeats.first(repeatKey{caller: caller.ID, method: clip.Counted(method, maxEcho), outcome: d.Outcome, rule: d.Rule, msg: "authz token refused"}) {
		return // counted; summarised when its window closes
	}
	attrs := [9]slog.Attr{
		slog.String("caller", caller.ID.String()),
		slog.String("method", clip.Counted(method, maxEcho)),
		slog.String("decision", d.Outcome.String()),
		slog.String("rule", d.Rule),
		slog.Bool("dry_run", d.Outcome == policy.DryRunDenied),
		slog.String("error", err.Error()),
	}
	n := 6
	if via, ok := viaAttr(ctx); ok { // a call through a front proxy (jwtsvid.go)
		attrs[n] = via
		n++
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs[n], attrs[n+1] = slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())
		n += 2
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "authz token refused", attrs[:n]...)
}
