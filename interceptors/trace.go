package interceptors

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/internal/rpcotel"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/telemetry"
	"github.com/trustmesh/trustmesh/txn"
)

// tracing is the Authorizer's link to OpenTelemetry (see
// [Authorizer.WithTelemetry]).
type tracing struct {
	tracer      trace.Tracer
	prop        propagation.TextMapPropagator
	trustRemote bool // continue the caller's trace; else a new root linked to it
	decisions   metric.Int64Counter

	// attrSets holds the counter's attribute set per decision (outcome and
	// rule), built once; copied on write, so a call reads it with one atomic
	// load and no lock.
	attrSets atomic.Pointer[map[decisionAttrs]metric.AddOption]
	mu       sync.Mutex // serializes writers of attrSets
}

// WithTelemetry returns a copy of a that reports to OpenTelemetry:
//   - an allowed (or dry-run denied) call carries its decision in the
//     context, for [UnaryServerTrace] and friends to put on the server span
//     (and to audit, with the trace and span IDs, once the span exists);
//   - a denied call, which never reaches the instrumented handler, gets a
//     server span of its own with the decision, the rule and a denied
//     event; like the server's allowed calls, it continues the caller's
//     trace (headers read with prop) only when trustRemote is set, and
//     otherwise starts a new trace linked to the caller's, so that a caller
//     cannot choose the trace ID its refusals are audited under;
//   - the counter trustmesh.authz.decisions counts decisions by decision
//     and rule (no caller: SPIFFE IDs are too many for a metric); when no
//     reader would see it (mp is a no-op or has no reader: the counter is
//     not Enabled), a decision is not recorded at all.
//
// The mesh package calls it when a server's telemetry is enabled.
func (a *Authorizer) WithTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator, trustRemote bool) (*Authorizer, error) {
	const scope = "github.com/trustmesh/trustmesh/interceptors"
	decisions, err := mp.Meter(scope).Int64Counter("trustmesh.authz.decisions",
		metric.WithDescription("Authorization decisions, by decision (allow, deny, dry_run_deny) and rule."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return nil, fmt.Errorf("interceptors: authz metrics: %w", err)
	}
	c := *a
	c.tracing = &tracing{tracer: tp.Tracer(scope), prop: prop, trustRemote: trustRemote, decisions: decisions}
	c.tracing.attrSets.Store(&map[decisionAttrs]metric.AddOption{})
	return &c, nil
}

// decisionAttrs is what the decision counter's attributes are made of.
type decisionAttrs struct {
	outcome policy.Outcome
	rule    string
}

// count adds one decision to the counter, with an attribute set built once
// per (decision, rule), unless no reader would see it.
func (t *tracing) count(ctx context.Context, d policy.Decision) {
	if !t.decisions.Enabled(ctx) { // a no-op meter provider, or no reader
		return
	}
	key := decisionAttrs{outcome: d.Outcome, rule: d.Rule}
	opt, ok := (*t.attrSets.Load())[key]
	if !ok {
		opt = t.addAttrSet(key)
	}
	t.decisions.Add(ctx, 1, opt)
}

// addAttrSet builds the attribute set of d and publishes it in a copy of the
// map (decisions and rules are few: a policy's rules times three outcomes).
func (t *tracing) addAttrSet(d decisionAttrs) metric.AddOption {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.attrSets.Load()
	if opt, ok := old[d]; ok {
		return opt
	}
	opt := metric.WithAttributeSet(attribute.NewSet(telemetry.AuthzDecisionKey.String(d.outcome.String()), telemetry.AuthzRuleKey.String(d.rule)))
	next := maps.Clone(old)
	next[d] = opt
	t.attrSets.Store(&next)
	return opt
}

type decisionKey struct{}

type decisionRecord struct {
	caller identity.Principal
	method string
	d      policy.Decision
	audit  *Authorizer // non-nil: audit the decision once the span exists
	mint   *Authorizer // non-nil: mint the edge's transaction token once the span exists (its txn is the trace id)
}

// proceed runs after a decision that lets the call proceed.
func (t *tracing) proceed(ctx context.Context, a *Authorizer, caller identity.Principal, method string, d policy.Decision, audit, mint bool) context.Context {
	rec := decisionRecord{caller: caller, method: method, d: d}
	if audit {
		rec.audit = a
	}
	if mint {
		rec.mint = a
	}
	return context.WithValue(ctx, decisionKey{}, rec)
}

// refused records a refused call as a server span of its own, with the
// RPC attributes of an answered call's span (rpc.system.name, rpc.method,
// rpc.response.status_code: code, and error.type) and status (why it was
// refused) as its error, and returns a context holding that span (for the
// audit event's IDs).
func (t *tracing) refused(ctx context.Context, carrier propagation.TextMapCarrier, caller identity.Principal, method string, d policy.Decision, code, status string) context.Context {
	name := strings.TrimPrefix(clip.Counted(method, maxEcho), "/")
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		rpcSystem(carrier), semconv.RPCMethodKey.String(name),
		semconv.RPCResponseStatusCodeKey.String(code), semconv.ErrorTypeKey.String(code))}
	if carrier != nil {
		remote := t.prop.Extract(ctx, carrier)
		if t.trustRemote {
			ctx = remote
		} else {
			opts = append(opts, trace.WithNewRoot())
			if sc := trace.SpanContextFromContext(remote); sc.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			}
		}
	}
	ctx, span := t.tracer.Start(ctx, name, opts...)
	telemetry.RecordDecision(span, caller.ID.String(), d.Outcome.String(), d.Rule)
	span.SetStatus(codes.Error, status)
	span.End()
	return ctx
}

// rpcSystem is rpc.system.name of a refused call: gRPC (and gRPC-Web) for
// grpc-go's calls and HTTP requests of those protocols, the Connect
// protocol otherwise.
func rpcSystem(carrier propagation.TextMapCarrier) attribute.KeyValue {
	if h, ok := carrier.(propagation.HeaderCarrier); ok && !strings.HasPrefix(http.Header(h).Get("Content-Type"), "application/grpc") {
		return semconv.RPCSystemNameConnectrpc
	}
	return semconv.RPCSystemNameGRPC
}

// annotate puts the decision (when the authorizer left one in ctx) and the
// caller chain on the server span, and extends the chain with the verified
// peer for the calls this handler makes (unless the trace was sampled out:
// see [sampledOut]). It audits the decision when the authorizer asked for
// it, with the span's IDs.
func annotate(ctx context.Context, method string) (context.Context, error) {
	// A health check is not instrumented (it has no span of its own) and
	// calls nothing (no chain to pass on): it gets its token and audit, as
	// without telemetry, and nothing else.
	health := rpcotel.IsHealth(method)
	rec, hasRec := ctx.Value(decisionKey{}).(decisionRecord)
	span := trace.SpanFromContext(ctx)
	if hasRec {
		if rec.mint != nil {
			var err error
			if ctx, err = rec.mint.mintFor(ctx, rec.caller, rec.method, rec.d, rec.audit != nil); err != nil {
				if !health && span.IsRecording() {
					recordServed(ctx, span, &rec, false)
				}
				return ctx, err
			}
		}
		if rec.audit != nil {
			rec.audit.audit(ctx, rec.caller, rec.method, rec.d)
		}
	}
	if health || sampledOut(span) {
		return ctx, nil
	}
	if p, ok := identity.FromContext(ctx); ok {
		ctx = telemetry.AppendChain(ctx, p.ID)
	}
	if span.IsRecording() {
		var r *decisionRecord
		if hasRec {
			r = &rec
		}
		recordServed(ctx, span, r, true)
	}
	return ctx, nil
}

// recordServed sets on the recording server span the decision (rec, when
// the authorizer left one), the transaction token's subject and id, the
// front proxy and, with chain, the caller chain, in one SetAttributes call
// (each call on an SDK span may grow, copy, its attribute slice): on the
// mesh's own server span, the one that sets its status when it ends
// (rpcotel.Pending), so they are set then, after the handler's own (on an
// attribute key both set, the mesh's value is the one kept).
func recordServed(ctx context.Context, span trace.Span, rec *decisionRecord, chain bool) {
	if p := rpcotel.PendingFor(ctx, span); p != nil {
		// The mesh's server span: set with its status when it ends.
		p.KV = servedAttrs(ctx, p.KV, rec, chain)
		return
	}
	var buf [8]attribute.KeyValue
	span.SetAttributes(servedAttrs(ctx, buf[:0], rec, chain)...)
}

// servedAttrs appends to attrs what recordServed sets.
func servedAttrs(ctx context.Context, attrs []attribute.KeyValue, rec *decisionRecord, chain bool) []attribute.KeyValue {
	if rec != nil {
		// allow or dry_run_deny: a denied call never gets here (the
		// authorizer records its span, with the denied event).
		attrs = telemetry.AppendDecision(attrs, rec.caller.ID.String(), rec.d.Outcome.String(), rec.d.Rule)
	}
	tok, hasTok := txn.FromContext(ctx)
	if hasTok {
		attrs = append(attrs, telemetry.TxnSubjectKey.String(tok.Subject().String()), telemetry.TxnIDKey.String(tok.ID()))
	}
	if px, ok := ProxiedFromContext(ctx); ok {
		attrs = append(attrs, telemetry.ViaKey.String(px.Via.ID.String()))
	}
	if chain { // reading the chain back parses every hop: only for a span that keeps it
		if hasTok {
			// With a verified transaction token the span records what was
			// verified, not the informational baggage: the subject, the
			// workload that minted the token (req_wl) and the direct peer.
			attrs = append(attrs, telemetry.CallerChainKey.StringSlice(verifiedChain(tok, ctx)))
		} else if c, ok := telemetry.ChainAttribute(ctx); ok {
			attrs = append(attrs, c)
		}
	}
	return attrs
}

// verifiedChain is the caller chain a transaction token and the mTLS peer
// prove: subject, minter (req_wl), direct peer, without repeats; at the
// edge, where the subject is the direct peer (and the token was minted
// here), the subject alone.
func verifiedChain(tok *txn.Token, ctx context.Context) []string {
	chain := []string{tok.Subject().String()}
	if p, ok := identity.FromContext(ctx); ok && p.ID == tok.Subject() {
		return chain
	}
	add := func(id string) {
		if chain[len(chain)-1] != id {
			chain = append(chain, id)
		}
	}
	add(tok.Minter().String())
	if p, ok := identity.FromContext(ctx); ok {
		add(p.ID.String())
	}
	return chain
}

// errMint is what a caller learns when the edge could not mint its
// transaction token (the reason is in the server's log).
var errMint = errors.New("transaction token unavailable")

// sampledOut reports whether span belongs to a trace that was sampled out:
// it does not record, and its span context is valid and unsampled, so that
// the calls made under it carry an unsampled trace context and (with the
// parent-based samplers) are not recorded downstream either. Such a call
// leaves the caller chain as it came: the chain is for recorded spans, and
// extending it rewrites the baggage on every call. A span that does not
// record but is sampled (a no-op tracer continuing a sampled caller's
// trace) still extends it, for the hops downstream that record.
func sampledOut(span trace.Span) bool {
	sc := span.SpanContext()
	return sc.IsValid() && !sc.IsSampled() && !span.IsRecording()
}

// appendChain is [telemetry.AppendChain] on the client side: ctx is the
// served call's (if any), and a trace sampled out leaves the chain as it
// came (see [sampledOut]).
func appendChain(ctx context.Context, self spiffeid.ID) context.Context {
	if sampledOut(trace.SpanFromContext(ctx)) {
		return ctx
	}
	return telemetry.AppendChain(ctx, self)
}

// UnaryServerTrace returns a grpc-go interceptor that records the caller,
// the authorization decision and the caller chain on the server span. It
// runs after [UnaryServerIdentity] and after the interceptor that starts
// the server span (mesh.NewGRPCServer puts it there).
func UnaryServerTrace() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := annotate(ctx, info.FullMethod)
		if err != nil {
			return nil, status.Error(grpccodes.Unavailable, err.Error())
		}
		return handler(ctx, req)
	}
}

// StreamServerTrace is the streaming form of [UnaryServerTrace].
func StreamServerTrace() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := annotate(ss.Context(), info.FullMethod)
		if err != nil {
			return status.Error(grpccodes.Unavailable, err.Error())
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// UnaryClientChain returns a grpc-go client interceptor that appends self
// (the calling workload's SPIFFE ID) to the caller chain in baggage. A call
// made under a span whose trace was sampled out (a valid, unsampled span
// context that does not record) leaves the chain as it came: the chain is
// recorded on spans only, and these calls are not recorded downstream with
// the parent-based samplers.
func UnaryClientChain(self spiffeid.ID) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(appendChain(ctx, self), method, req, reply, cc, opts...)
	}
}

// StreamClientChain is the streaming form of [UnaryClientChain].
func StreamClientChain(self spiffeid.ID) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(appendChain(ctx, self), desc, cc, method, opts...)
	}
}

// connectTrace is the connect-go form of the trace interceptors: on the
// server side it annotates the span, on the client side it extends the
// caller chain with self.
type connectTrace struct {
	self spiffeid.ID
}

// ConnectServerTrace returns a connect-go interceptor that records the
// caller, decision and chain on the server span; put it inside (after) the
// interceptor that starts the span (the mesh installs both).
func ConnectServerTrace() connect.Interceptor { return connectTrace{} }

// ConnectClientChain returns a connect-go interceptor that appends self to
// the caller chain, like [UnaryClientChain]; put it outside (before) the
// interceptor that starts the client span and injects the baggage.
func ConnectClientChain(self spiffeid.ID) connect.Interceptor { return connectTrace{self: self} }

func (c connectTrace) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(appendChain(ctx, c.self), req)
		}
		ctx, err := annotate(ctx, req.Spec().Procedure)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		return next(ctx, req)
	}
}

func (c connectTrace) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return next(appendChain(ctx, c.self), spec)
	}
}

func (c connectTrace) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := annotate(ctx, conn.Spec().Procedure)
		if err != nil {
			return connect.NewError(connect.CodeUnavailable, err)
		}
		return next(ctx, conn)
	}
}

// UnaryClientTxn returns a grpc-go client interceptor that forwards, as the
// txn-token metadata, the transaction token of the call being served (the
// one in ctx: verified by the server's Authorizer, or minted at the edge),
// unchanged. Calls made outside a served call carry none. The mesh
// package's clients install it.
func UnaryClientTxn() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withOutgoingTxn(ctx), method, req, reply, cc, opts...)
	}
}

// StreamClientTxn is the streaming form of [UnaryClientTxn].
func StreamClientTxn() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withOutgoingTxn(ctx), desc, cc, method, opts...)
	}
}

func withOutgoingTxn(ctx context.Context) context.Context {
	if raw, ok := txn.RawFromContext(ctx); ok {
		return metadata.AppendToOutgoingContext(ctx, txn.MetadataKey, raw)
	}
	return ctx
}

// ConnectClientTxn returns a connect-go client interceptor that forwards
// the transaction token of the call being served, as the Txn-Token header,
// like [UnaryClientTxn].
func ConnectClientTxn() connect.Interceptor { return connectTxn{} }

type connectTxn struct{}

func (connectTxn) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if raw, ok := txn.RawFromContext(ctx); ok && req.Spec().IsClient {
			req.Header().Set(txn.HeaderName, raw)
		}
		return next(ctx, req)
	}
}

func (connectTxn) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if raw, ok := txn.RawFromContext(ctx); ok {
			conn.RequestHeader().Set(txn.HeaderName, raw)
		}
		return conn
	}
}

func (connectTxn) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
