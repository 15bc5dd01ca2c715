package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The span attributes trustmesh sets on server spans. They are the same
// whichever stack (grpc-go or connect-go) served the call.
const (
	// PeerSPIFFEIDKey is the SPIFFE ID of the verified mTLS peer, e.g.
	// "spiffe://shop.example/ns/shop/sa/gateway". It is set on spans only:
	// SPIFFE IDs are too high-cardinality for metric attributes.
	PeerSPIFFEIDKey = attribute.Key("trustmesh.peer.spiffe_id")
	// AuthzDecisionKey is the authorization decision: [DecisionAllow],
	// [DecisionDeny] or [DecisionDryRunDeny].
	AuthzDecisionKey = attribute.Key("trustmesh.authz.decision")
	// AuthzRuleKey is the name of the policy rule that decided, or
	// policy.DefaultRule ("default-deny") when no rule matched.
	AuthzRuleKey = attribute.Key("trustmesh.authz.rule")
	// CallerChainKey is the caller chain from baggage (see [AppendChain]),
	// a string slice of SPIFFE IDs, the original caller first. It is
	// informational only.
	CallerChainKey = attribute.Key("trustmesh.caller.chain")

	// ViaKey is the front proxy (a SPIFFE ID) a call came through, when
	// its caller was taken from a JWT-SVID (the span's caller is then that
	// JWT-SVID's subject).
	ViaKey = attribute.Key("trustmesh.via")

	// TxnSubjectKey is the verified subject of the call's transaction
	// token: who the transaction is for (a SPIFFE ID).
	TxnSubjectKey = attribute.Key("trustmesh.txn.subject")

	// TxnIDKey is the transaction id (txn claim) of the call's transaction
	// token.
	TxnIDKey = attribute.Key("trustmesh.txn.id")
)

// The values of [AuthzDecisionKey].
const (
	// DecisionAllow: the policy allowed the call.
	DecisionAllow = "allow"
	// DecisionDeny: the policy denied the call, which was refused.
	DecisionDeny = "deny"
	// DecisionDryRunDeny: the policy would have denied the call, but runs
	// in dry-run mode, so the call went ahead.
	DecisionDryRunDeny = "dry_run_deny"
)

// DeniedEvent is the name of the span event [RecordDecision] adds on
// [DecisionDeny].
const DeniedEvent = "trustmesh.authz.denied"

// RecordDecision sets the peer, decision and rule attributes on span and, on
// [DecisionDeny], adds a [DeniedEvent] event. An empty peerID or rule is
// omitted. On a span that is not recording (sampled out, or no SDK) it does
// nothing and allocates nothing.
func RecordDecision(span trace.Span, peerID, decision, rule string) {
	if !span.IsRecording() {
		return
	}
	var kv [3]attribute.KeyValue
	span.SetAttributes(AppendDecision(kv[:0], peerID, decision, rule)...)
	if decision == DecisionDeny {
		span.AddEvent(DeniedEvent)
	}
}

// AppendDecision appends to attrs the attributes [RecordDecision] sets,
// for a caller that sets them with others in one SetAttributes call (each
// call on an SDK span may grow its attribute slice).
func AppendDecision(attrs []attribute.KeyValue, peerID, decision, rule string) []attribute.KeyValue {
	attrs = append(attrs, AuthzDecisionKey.String(decision))
	if peerID != "" {
		attrs = append(attrs, PeerSPIFFEIDKey.String(peerID))
	}
	if rule != "" {
		attrs = append(attrs, AuthzRuleKey.String(rule))
	}
	return attrs
}

// RecordChain sets [CallerChainKey] on span to chain, as returned by
// [ChainFromContext]. An empty chain is omitted.
func RecordChain(span trace.Span, chain []string) {
	if len(chain) == 0 || !span.IsRecording() {
		return
	}
	span.SetAttributes(CallerChainKey.StringSlice(chain))
}
