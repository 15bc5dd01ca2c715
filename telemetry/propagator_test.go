package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/telemetry"
)

// composite is what telemetry.W3C must be indistinguishable from.
var composite = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// members renders a context's baggage in a canonical order, so that two
// extractions can be compared.
func members(ctx context.Context) string {
	ms := baggage.FromContext(ctx).Members()
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.String())
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// parentBag is baggage already in the context before extraction: an
// extraction that finds no usable baggage must leave it there.
func parentBag(t testing.TB) context.Context {
	m, err := baggage.NewMemberRaw("parent", "kept")
	if err != nil {
		t.Fatal(err)
	}
	b, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return baggage.ContextWithBaggage(context.Background(), b)
}

// sameExtraction fails t when W3C and the composite propagator read carrier
// differently (span context or baggage).
func sameExtraction(t testing.TB, carrier propagation.TextMapCarrier) {
	t.Helper()
	for range 2 { // the second time from the cache
		want := composite.Extract(parentBag(t), carrier)
		got := telemetry.W3C().Extract(parentBag(t), carrier)
		if g, w := trace.SpanContextFromContext(got), trace.SpanContextFromContext(want); !g.Equal(w) {
			t.Fatalf("span context: W3C %v, composite %v", g, w)
		}
		if g, w := members(got), members(want); g != w {
			t.Fatalf("baggage: W3C %q, composite %q", g, w)
		}
	}
}

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

var baggageHeaders = []string{
	"",
	"trustmesh.chain=spiffe://shop.example/user/alice%2Cspiffe://shop.example/ns/shop/sa/gateway",
	"a=1,b=2;prop=x,c=%E2%82%AC",
	"a=1,a=2",        // last one wins
	"bad key=1,ok=2", // the valid member is kept
	"only bad",       // nothing valid: the parent's baggage stays
	"k=v%",           // invalid percent-encoding
	"k=\xff\xfe",     // invalid UTF-8
	strings.Repeat("k=v,", 100),
	"k=" + strings.Repeat("v", 9000), // over the 8192-byte limit
}

func TestW3CExtractsAsTheCompositeDoes(t *testing.T) {
	for i, h := range baggageHeaders {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			carrier := propagation.MapCarrier{"traceparent": traceparent, "tracestate": "k=v"}
			if h != "" {
				carrier["baggage"] = h
			}
			sameExtraction(t, carrier)
			hc := propagation.HeaderCarrier(http.Header{})
			hc.Set("traceparent", traceparent)
			if h != "" {
				hc.Set("baggage", h)
			}
			sameExtraction(t, hc)
		})
	}
}

// Several baggage headers (HeaderCarrier is a ValuesGetter) are combined
// exactly as propagation.Baggage combines them.
func TestW3CCombinesSeveralBaggageHeaders(t *testing.T) {
	h := http.Header{}
	h.Add("Baggage", "a=1,b=2")
	h.Add("Baggage", "c=3,a=4")
	sameExtraction(t, propagation.HeaderCarrier(h))
	if got := members(telemetry.W3C().Extract(context.Background(), propagation.HeaderCarrier(h))); got != "a=4,b=2,c=3" {
		t.Fatalf("combined baggage %q, want a=4,b=2,c=3", got)
	}
}

// The cache is bounded and keyed by the whole header: a caller that sends a
// new baggage on every call still gets its own, not a neighbour's, and old
// headers parse again after they are evicted.
func TestW3CCacheNeverMixesHeaders(t *testing.T) {
	for i := range 2000 {
		h := fmt.Sprintf("n=%d", i)
		got := members(telemetry.W3C().Extract(context.Background(), propagation.MapCarrier{"baggage": h}))
		if got != h {
			t.Fatalf("header %q extracted as %q", h, got)
		}
	}
	for i := range 2000 {
		h := fmt.Sprintf("n=%d", i)
		if got := members(telemetry.W3C().Extract(context.Background(), propagation.MapCarrier{"baggage": h})); got != h {
			t.Fatalf("header %q extracted again as %q", h, got)
		}
	}
}

func TestW3CInjectsAsTheCompositeDoes(t *testing.T) {
	ctx := composite.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent, "tracestate": "k=v", "baggage": baggageHeaders[2]})
	want, got := propagation.MapCarrier{}, propagation.MapCarrier{}
	composite.Inject(ctx, want)
	telemetry.W3C().Inject(ctx, got)
	// Baggage members come out in map order: compare them as sets.
	for _, c := range []propagation.MapCarrier{got, want} {
		c["baggage"] = members(composite.Extract(context.Background(), propagation.MapCarrier{"baggage": c["baggage"]}))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 {
		t.Fatalf("W3C injected %v, composite %v", got, want)
	}
	if !slices.Equal(slices.Sorted(slices.Values(telemetry.W3C().Fields())), slices.Sorted(slices.Values(composite.Fields()))) {
		t.Fatalf("fields %v, composite %v", telemetry.W3C().Fields(), composite.Fields())
	}
}

// A cached extraction allocates only the context it returns (the context
// and the baggage value it holds).
func TestW3CCachedExtractionAllocations(t *testing.T) {
	carrier := propagation.MapCarrier{"baggage": baggageHeaders[1]}
	telemetry.W3C().Extract(context.Background(), carrier)
	if n := testing.AllocsPerRun(100, func() { telemetry.W3C().Extract(context.Background(), carrier) }); n > 2 {
		t.Fatalf("cached extraction: %v allocations, want ≤ 2 (the context and its value)", n)
	}
}

func FuzzW3CExtract(f *testing.F) {
	for _, h := range baggageHeaders {
		f.Add(traceparent, h)
	}
	f.Fuzz(func(t *testing.T, tp, h string) {
		sameExtraction(t, propagation.MapCarrier{"traceparent": tp, "baggage": h})
		// HTTP headers, with the baggage split in two headers at a comma
		// (a ValuesGetter carrier: the multi-header path).
		hc := http.Header{"Traceparent": {tp}}
		if first, rest, ok := strings.Cut(h, ","); ok {
			hc["Baggage"] = []string{first, rest}
		} else {
			hc["Baggage"] = []string{h}
		}
		sameExtraction(t, propagation.HeaderCarrier(hc))
	})
}

func BenchmarkExtract(b *testing.B) {
	carrier := propagation.MapCarrier{"traceparent": traceparent, "baggage": baggageHeaders[1]}
	for _, p := range []struct {
		name string
		p    propagation.TextMapPropagator
	}{{"impl=composite", composite}, {"impl=w3c", telemetry.W3C()}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.p.Extract(context.Background(), carrier)
			}
		})
	}
}
