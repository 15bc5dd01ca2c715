package telemetry

import (
	"context"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"

	"github.com/trustmesh/trustmesh/internal/strcache"
)

// ChainMember is the W3C baggage member that carries the caller chain.
//
// Its value is the SPIFFE IDs of the hops so far, the original caller first,
// separated by ",". A comma cannot occur in a SPIFFE ID (trust domains allow
// only [a-z0-9._-], path segments only [a-zA-Z0-9._-]), and it is not a
// baggage value character, so on the wire it is percent-encoded as %2C by the
// baggage package; ":" and "/" travel as they are. For example:
//
//	baggage: trustmesh.chain=spiffe://shop.example/user/alice%2Cspiffe://shop.example/ns/shop/sa/gateway
const ChainMember = "trustmesh.chain"

// MaxChain is the most SPIFFE IDs a caller chain may hold. A longer chain is
// dropped, not truncated.
const MaxChain = 8

const chainSep = ","

// AppendChain returns ctx with id appended to the caller chain in its
// baggage. Clients call it with their own ID before calling downstream, so the
// next server sees who called whom. Servers may call it with the verified
// peer's ID before handing ctx to the handler: since it does not append an ID
// that is already last, a chain whose last hop did not append itself is then
// completed from the mTLS handshake (this is how the original user appears at
// the edge).
//
// A chain that [ChainFromContext] would drop (malformed, a non-SPIFFE
// element, or longer than [MaxChain]) is removed, and so is a chain that
// appending id would make longer than MaxChain: a hop never passes on a chain
// that the next hop would not accept, and never starts a new one that would
// hide earlier hops. A zero id leaves ctx unchanged.
//
// The chain is informational: it is what the callers say, not what was
// verified, and authorization never depends on it.
func AppendChain(ctx context.Context, id spiffeid.ID) context.Context {
	if id.IsZero() {
		return ctx
	}
	bag := baggage.FromContext(ctx)
	value := id.String()
	if m := bag.Member(ChainMember); m.Key() != "" {
		old := m.Value()
		c := parseChain(old)
		if !c.ok {
			return baggage.ContextWithBaggage(ctx, bag.DeleteMember(ChainMember))
		}
		if c.ids[len(c.ids)-1] == value {
			return ctx // already the last hop
		}
		if len(c.ids) >= MaxChain {
			return baggage.ContextWithBaggage(ctx, bag.DeleteMember(ChainMember))
		}
		value = old + chainSep + value
	}
	m, err := baggage.NewMemberRaw(ChainMember, value)
	if err == nil {
		bag, err = bag.SetMember(m)
	}
	if err != nil {
		return baggage.ContextWithBaggage(ctx, bag.DeleteMember(ChainMember))
	}
	return baggage.ContextWithBaggage(ctx, bag)
}

// ChainFromContext returns the caller chain in ctx's baggage, the original
// caller first, and whether there was a usable one. A chain that is empty,
// malformed, has an element that is not a valid SPIFFE ID, or holds more than
// [MaxChain] IDs is dropped: ChainFromContext returns nil, false.
//
// The chain is informational only (callers can write anything into baggage):
// record it on spans ([RecordChain]), never authorize on it.
func ChainFromContext(ctx context.Context) ([]string, bool) {
	c := parseChain(baggage.FromContext(ctx).Member(ChainMember).Value())
	if !c.ok {
		return nil, false
	}
	return slices.Clone(c.ids), true
}

// ChainAttribute returns the caller chain in ctx's baggage as the
// [CallerChainKey] attribute, and whether there was a usable one: the
// attribute CallerChainKey.StringSlice of what [ChainFromContext] returns,
// built once per distinct chain (a mesh's calls carry a few chains over and
// over).
func ChainAttribute(ctx context.Context) (attribute.KeyValue, bool) {
	c := parseChain(baggage.FromContext(ctx).Member(ChainMember).Value())
	return c.attr, c.ok
}

// chains remembers the chain values seen lately, checked and split:
// checking one parses every SPIFFE ID in it, and a mesh's calls carry the
// same few chains over and over (bounded: see strcache).
var chains = strcache.New[*parsedChain]()

// parsedChain is a chain value, checked: when ok, its IDs and the span
// attribute of them. Shared by every call with that value: never modified.
type parsedChain struct {
	ok   bool
	ids  []string
	attr attribute.KeyValue
}

var noChain = &parsedChain{}

// parseChain is the checked chain value v, from the cache when it holds it.
func parseChain(v string) *parsedChain {
	if v == "" {
		return noChain
	}
	if p, ok := chains.Get(v); ok {
		return p
	}
	p := &parsedChain{}
	if _, p.ok = checkChain(v); p.ok {
		p.ids = strings.Split(v, chainSep)
		p.attr = CallerChainKey.StringSlice(p.ids)
	}
	chains.Put(v, p) // a baggage member's value: its own string
	return p
}

// checkChain reports how many IDs the chain value v holds and whether it is
// acceptable, without allocating.
func checkChain(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	n := strings.Count(v, chainSep) + 1
	if n > MaxChain {
		return n, false
	}
	for elem := range strings.SplitSeq(v, chainSep) {
		if _, err := spiffeid.FromString(elem); err != nil {
			return n, false
		}
	}
	return n, true
}
