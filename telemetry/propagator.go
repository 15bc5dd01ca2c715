package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/trustmesh/trustmesh/internal/strcache"
)

// W3C returns the W3C propagator of trace context (traceparent, tracestate)
// and baggage: what
//
//	propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
//
// does, the same on the wire and in the context, with one difference in
// cost: the baggage a server extracts is parsed once per distinct header,
// not once per call. In a mesh the baggage of a call is the caller chain,
// which repeats from call to call, and parsing it is most of what
// extracting trace context costs (baggage.Parse re-encodes every member to
// count its bytes). The parsed baggage is an immutable value, so one can
// be shared by every call that sent the same header; the cache holds at
// most 256 headers (a header it does not hold is parsed as usual, and
// replaces one of them), so a caller that sends a new baggage on every call
// costs a parse per call, as without it, and memory stays bounded.
//
// One difference besides the cost: a baggage header with invalid members
// is not reported to otel's error handler (the composite reports the first
// one of the process); its valid members are kept alike.
//
// otelenv.Setup installs it as the global propagator.
func W3C() propagation.TextMapPropagator { return w3c }

var w3c = &w3cPropagator{bags: strcache.New[baggage.Baggage]()}

type w3cPropagator struct {
	bags *strcache.Cache[baggage.Baggage] // by header
}

const baggageHeader = "baggage"

func (p *w3cPropagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	propagation.TraceContext{}.Inject(ctx, carrier)
	propagation.Baggage{}.Inject(ctx, carrier)
}

func (p *w3cPropagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	var h string
	if mc, ok := carrier.(propagation.ValuesGetter); ok {
		// One look-up for both cases, rather than Get and then Values.
		switch vs := mc.Values(baggageHeader); len(vs) {
		case 0:
		case 1:
			h = vs[0]
		default:
			return propagation.Baggage{}.Extract(ctx, carrier) // several headers: combined there
		}
	} else {
		h = carrier.Get(baggageHeader)
	}
	if h == "" {
		return ctx
	}
	bag := p.parse(h)
	if bag.Len() == 0 {
		return ctx
	}
	return baggage.ContextWithBaggage(ctx, bag)
}

// parse is baggage.Parse of a header, from the cache when it holds it. As
// propagation.Baggage does, a header with invalid members keeps the valid
// ones (an entirely invalid one gives the empty baggage).
func (p *w3cPropagator) parse(h string) baggage.Baggage {
	if bag, ok := p.bags.Get(h); ok {
		return bag
	}
	bag, err := baggage.Parse(h) // keeps the valid members on error
	if err != nil && bag.Len() == 0 {
		return bag // not worth a slot
	}
	p.bags.Put(strings.Clone(h), bag) // h may share a buffer the carrier reuses
	return bag
}

func (p *w3cPropagator) Fields() []string {
	return []string{"traceparent", "tracestate", baggageHeader}
}
