package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

// WithTransactionTokens makes the Authorizer verify the transaction token a
// call carries (the txn-token metadata key, Txn-Token HTTP header; see the
// txn package): its signer's chain against bundles under the X.509-SVID
// rules, its audience the trust domain audience, its signer one of the
// policy's txn_issuers in force ([policy.Policy.TxnIssuers], followed on
// every reload). A verified token's subject is what [policy.Rule.Subject]
// patterns match, and the token is in the call's context
// ([txn.FromContext]) for handlers and for mesh clients, which forward it
// unchanged. A call carrying a token that does not verify is refused with
// Unauthenticated and the reason ("invalid transaction token: txn: token
// expired ..."), whatever the policy says; a call that only a subject rule
// would allow and that carries no token is refused with Unauthenticated
// ("transaction token required for METHOD"). Verified tokens are cached
// for their life, so a hop after the first costs a map look-up; the cache
// follows a bundle source that replaces its bundle on an update (the
// certs and Workload API sources, x509bundle.Set.Add), but not a
// *x509bundle.Bundle edited in place (see [txn.NewVerifier]; pass
// txn.WithCacheSize(0) in opts for such a source).
//
// By default an Authorizer ignores transaction tokens (a call that carries
// one is decided as if it did not), and [NewAuthorizer] refuses a policy
// with subject rules.
func WithTransactionTokens(bundles x509bundle.Source, audience spiffeid.TrustDomain, opts ...txn.VerifierOption) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) {
		if bundles == nil || audience.IsZero() {
			c.errs = append(c.errs, errors.New("interceptors: WithTransactionTokens: need the trust bundles and the trust domain"))
			return
		}
		a := c.a
		v, err := txn.NewVerifier(bundles, audience, func(id spiffeid.ID) error {
			if a.policy.Engine().IsTxnIssuer(id) {
				return nil
			}
			return fmt.Errorf("%s is not one of the policy's txn_issuers", id)
		}, opts...)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("interceptors: WithTransactionTokens: %w", err))
			return
		}
		a.txnVerifier = v
	})
}

// WithTxnMinter makes the server an edge: a call that passes authorization
// and carries no transaction token gets one, minted by m for the caller's
// SPIFFE ID as subject and the method it entered by, in its context, so
// that the mesh clients the handler calls with forward it downstream. A
// call that carries a (valid) token keeps it: a token is never re-minted or
// widened on the way. By default an Authorizer mints nothing.
func WithTxnMinter(m *txn.Minter) AuthorizerOption {
	return authorizerOption(func(c *authorizerConfig) {
		if m == nil {
			c.errs = append(c.errs, errors.New("interceptors: WithTxnMinter(nil): build one with txn.NewMinter"))
			return
		}
		c.a.txnMinter = m
	})
}

// checkPolicySubjects fails when e has subject rules and a verifies no
// transaction tokens.
func (a *Authorizer) checkPolicySubjects(e *policy.Engine) error {
	if e.NeedsSubjects() && a.txnVerifier == nil {
		return errors.New("interceptors: the policy has rules with subject patterns, but no transaction tokens are verified (WithTransactionTokens)")
	}
	return nil
}

// txnError is a call refused for its transaction token.
type txnError struct{ msg string }

func (e *txnError) Error() string { return e.msg }

// callTxn verifies the transaction token of a call, if it carries one and
// the Authorizer verifies them. A nil token and nil error: none.
func (a *Authorizer) callTxn(ctx context.Context, carrier propagation.TextMapCarrier) (*txn.Token, error) {
	if a.txnVerifier == nil {
		return nil, nil
	}
	raw, err := txn.FromHeader(txnValues(ctx, carrier))
	if err != nil {
		return nil, &txnError{msg: "invalid transaction token: " + err.Error()}
	}
	if raw == "" {
		return nil, nil
	}
	tok, err := a.txnVerifier.Verify(raw, time.Now())
	if err != nil {
		return nil, &txnError{msg: "invalid transaction token: " + err.Error()}
	}
	return tok, nil
}

// txnValues returns the values of a call's transaction token header.
func txnValues(ctx context.Context, carrier propagation.TextMapCarrier) []string {
	switch c := carrier.(type) {
	case rpcotel.MDCarrier:
		return metadata.MD(c)[txn.MetadataKey]
	case propagation.HeaderCarrier:
		return http.Header(c).Values(txn.HeaderName)
	case nil:
		return metadata.ValueFromIncomingContext(ctx, txn.MetadataKey)
	default:
		if v := c.Get(txn.MetadataKey); v != "" {
			return []string{v}
		}
		return nil
	}
}

// mintTxn mints the token of a call entering at an edge.
func (a *Authorizer) mintTxn(ctx context.Context, caller identity.Principal, method string) (*txn.Token, error) {
	tok, err := a.txnMinter.Mint(ctx, txn.Request{Subject: caller.ID, Method: method})
	if err != nil {
		// The edge cannot vouch for the call: refuse it rather than send
		// it on without a subject.
		return nil, fmt.Errorf("interceptors: mint a transaction token: %w", err)
	}
	return tok, nil
}

// auditTxn writes the audit event of a call refused for its transaction
// token, at Warn.
func (a *Authorizer) auditTxn(ctx context.Context, caller identity.Principal, method string, d policy.Decision, err error) {
	if !a.repeats.first(repeatKey{caller: caller.ID, method: clip.Counted(method, maxEcho), outcome: d.Outcome, rule: d.Rule, msg: "authz transaction token refused"}) {
		return
	}
	attrs := []slog.Attr{
		slog.String("caller", caller.ID.String()),
		slog.String("method", clip.Counted(method, maxEcho)),
		slog.String("decision", policy.Denied.String()),
		slog.String("rule", d.Rule),
		slog.String("error", strings.TrimPrefix(err.Error(), "invalid transaction token: ")),
	}
	if via, ok := viaAttr(ctx); ok { // a call through a front proxy (jwtsvid.go)
		attrs = append(attrs, via)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "authz transaction token refused", attrs...)
}
