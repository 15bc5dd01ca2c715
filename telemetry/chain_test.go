package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/trustmesh/trustmesh/telemetry"
)

// SPIFFE IDs of the sample's callers, as the tests' peers and chain hops.
const (
	user    = "spiffe://shop.example/user/alice"
	gateway = "spiffe://shop.example/ns/shop/sa/gateway"
	orders  = "spiffe://shop.example/ns/shop/sa/orders"
)

// withChain returns a context whose baggage holds the raw chain value v and
// another member that must survive.
func withChain(t *testing.T, v string) context.Context {
	t.Helper()
	chain, err := baggage.NewMemberRaw(telemetry.ChainMember, v)
	if err != nil {
		t.Fatal(err)
	}
	other, err := baggage.NewMemberRaw("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(chain, other)
	if err != nil {
		t.Fatal(err)
	}
	return baggage.ContextWithBaggage(context.Background(), bag)
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("spiffe://shop.example/ns/shop/sa/svc%d", i)
	}
	return out
}

func TestChainFromContextDrops(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name, value string
	}{
		{"empty", ""},
		{"only-separator", ","},
		{"trailing-separator", user + ","},
		{"leading-separator", "," + user},
		{"empty-element", user + ",," + gateway},
		{"space-after-separator", user + ", " + gateway},
		{"not-a-uri", "alice"},
		{"wrong-scheme", "https://shop.example/user/alice"},
		{"upper-case-trust-domain", "spiffe://Shop.Example/user/alice"},
		{"query", "spiffe://shop.example/user/alice?admin=true"},
		{"dot-segment", "spiffe://shop.example/user/../admin"},
		{"trust-domain-only-then-bad", "spiffe://shop.example," + "spiffe://shop.example/a b"},
		{"too-long", strings.Join(ids(telemetry.MaxChain+1), ",")},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := withChain(t, tc.value)
			if got, ok := telemetry.ChainFromContext(ctx); ok || got != nil {
				t.Errorf("ChainFromContext = %q, %v; want nil, false", got, ok)
			}
			// The next hop does not pass it on either.
			ctx = telemetry.AppendChain(ctx, spiffeid.RequireFromString(orders))
			bag := baggage.FromContext(ctx)
			if m := bag.Member(telemetry.ChainMember); m.Key() != "" {
				t.Errorf("AppendChain passed on %q, want the chain removed", m.Value())
			}
			if bag.Member("tenant").Value() != "acme" {
				t.Error("AppendChain lost another baggage member")
			}
		})
	}
	if got, ok := telemetry.ChainFromContext(context.Background()); ok || got != nil {
		t.Errorf("ChainFromContext without baggage = %q, %v; want nil, false", got, ok)
	}
}

func TestAppendChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var want []string
	for _, id := range ids(telemetry.MaxChain) {
		ctx = telemetry.AppendChain(ctx, spiffeid.RequireFromString(id))
		want = append(want, id)
		got, ok := telemetry.ChainFromContext(ctx)
		if !ok || !slices.Equal(got, want) {
			t.Fatalf("after appending %s: ChainFromContext = %q, %v; want %q, true", id, got, ok, want)
		}
	}
	// Appending the last hop again changes nothing, even at the bound.
	same := telemetry.AppendChain(ctx, spiffeid.RequireFromString(want[len(want)-1]))
	if got, _ := telemetry.ChainFromContext(same); !slices.Equal(got, want) {
		t.Errorf("appending the last hop again: chain = %q, want %q", got, want)
	}
	if same := telemetry.AppendChain(ctx, spiffeid.ID{}); same != ctx {
		t.Error("appending a zero ID changed the context")
	}
	// One more would exceed MaxChain: the chain is removed, not truncated.
	ctx = telemetry.AppendChain(ctx, spiffeid.RequireFromString(user))
	if got, ok := telemetry.ChainFromContext(ctx); ok {
		t.Errorf("chain of %d = %q, want it dropped", telemetry.MaxChain+1, got)
	}
}

// The chain survives the W3C baggage header between processes.
func TestChainOverBaggageHeader(t *testing.T) {
	t.Parallel()
	ctx := telemetry.AppendChain(context.Background(), spiffeid.RequireFromString(user))
	ctx = telemetry.AppendChain(ctx, spiffeid.RequireFromString(gateway))
	header := http.Header{}
	propagation.Baggage{}.Inject(ctx, propagation.HeaderCarrier(header))
	wantHeader := "trustmesh.chain=" + user + "%2C" + gateway
	if got := header.Get("Baggage"); got != wantHeader {
		t.Errorf("baggage header = %q, want %q", got, wantHeader)
	}
	got, ok := telemetry.ChainFromContext(propagation.Baggage{}.Extract(context.Background(), propagation.HeaderCarrier(header)))
	if want := []string{user, gateway}; !ok || !slices.Equal(got, want) {
		t.Errorf("chain after the header = %q, %v; want %q, true", got, ok, want)
	}
}

func ExampleAppendChain() {
	// The gateway's server side completes the chain with its verified peer
	// (the user), then its client side appends the gateway before calling
	// orders.
	ctx := telemetry.AppendChain(context.Background(), spiffeid.RequireFromString("spiffe://shop.example/user/alice"))
	ctx = telemetry.AppendChain(ctx, spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/gateway"))

	// orders' server side reads it (and records it on its span).
	chain, ok := telemetry.ChainFromContext(ctx)
	fmt.Println(ok)
	for _, id := range chain {
		fmt.Println(id)
	}
	// Output:
	// true
	// spiffe://shop.example/user/alice
	// spiffe://shop.example/ns/shop/sa/gateway
}

// TestChainAttributeIsChainFromContexts: through the parse cache,
// ChainAttribute is the attribute of what ChainFromContext returns, for
// chains good and bad, seen once or again, and more distinct chains than
// the cache holds; ChainFromContext hands out a copy, so a caller that
// edits it changes nothing for the next one.
func TestChainAttributeIsChainFromContexts(t *testing.T) {
	t.Parallel()
	values := []string{user, user + "," + gateway, "not-a-spiffe-id", user + ",", strings.Join(ids(telemetry.MaxChain+1), ",")}
	for i := range 600 { // past the cache's 256 slots: collisions replace entries
		values = append(values, user+fmt.Sprintf(",spiffe://shop.example/ns/shop/sa/n%d", i))
	}
	for round := range 2 {
		for _, v := range values {
			ctx := withChain(t, v)
			chain, ok := telemetry.ChainFromContext(ctx)
			attr, aok := telemetry.ChainAttribute(ctx)
			if ok != aok {
				t.Fatalf("round %d, %q: ChainFromContext ok=%v, ChainAttribute ok=%v", round, v, ok, aok)
			}
			if !ok {
				continue
			}
			if want := strings.Split(v, ","); !slices.Equal(chain, want) {
				t.Fatalf("round %d, %q: chain %q", round, v, chain)
			}
			if attr.Key != telemetry.CallerChainKey || !slices.Equal(attr.Value.AsStringSlice(), chain) {
				t.Fatalf("round %d, %q: attribute %v", round, v, attr)
			}
			chain[0] = "edited"
		}
	}
}
