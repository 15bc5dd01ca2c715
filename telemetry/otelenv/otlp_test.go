package otelenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// capture is an otlptrace.Client that keeps every request as a collector
// receives it: marshalled, as the real clients do before UploadTraces
// returns, and decoded again.
type capture struct {
	mu   sync.Mutex
	reqs [][]*tracepb.ResourceSpans
}

func (c *capture) Start(context.Context) error { return nil }
func (c *capture) Stop(context.Context) error  { return nil }
func (c *capture) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	wire, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		return err
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(wire, &req); err != nil {
		return err
	}
	for _, rs := range req.ResourceSpans {
		if len(rs.ProtoReflect().GetUnknown()) != 0 {
			return fmt.Errorf("a ResourceSpans decodes with unknown fields %x", rs.ProtoReflect().GetUnknown())
		}
	}
	c.reqs = append(c.reqs, req.ResourceSpans)
	return nil
}

// canonical orders a request's resource and scope groups (otlptrace's come
// in map order) and marshals it deterministically, for comparison.
func canonical(t *testing.T, rss []*tracepb.ResourceSpans) string {
	t.Helper()
	key := func(m proto.Message) string {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, rs := range rss {
		slices.SortFunc(rs.ScopeSpans, func(a, b *tracepb.ScopeSpans) int { return strings.Compare(key(a.Scope), key(b.Scope)) })
	}
	slices.SortFunc(rss, func(a, b *tracepb.ResourceSpans) int { return strings.Compare(key(a.Resource), key(b.Resource)) })
	return key(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
}

// exportBoth exports each batch with otlptrace.Exporter and with otelenv's
// exporter (one exporter each for all the batches, as in a process), and
// returns the requests each sent, as a collector decodes them. refused is
// otlptrace's first error: the batches are then not all compared.
func exportBoth(t *testing.T, batches ...[]sdktrace.ReadOnlySpan) (ours, theirs [][]*tracepb.ResourceSpans, refused error) {
	t.Helper()
	ctx := context.Background()
	theirCap, ourCap := &capture{}, &capture{}
	ref, err := otlptrace.New(ctx, theirCap)
	if err != nil {
		t.Fatal(err)
	}
	lean := &otlpExporter{client: ourCap}
	for _, b := range batches {
		if err := ref.ExportSpans(ctx, b); err != nil {
			return nil, nil, err
		}
		if err := lean.ExportSpans(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return ourCap.reqs, theirCap.reqs, nil
}

// sameRequests fails t unless ours are theirs, request by request, up to
// the order of resource and scope groups.
func sameRequests(t *testing.T, ours, theirs [][]*tracepb.ResourceSpans) {
	t.Helper()
	if len(ours) != len(theirs) {
		t.Fatalf("%d requests, otlptrace sent %d", len(ours), len(theirs))
	}
	for i := range ours {
		if got, want := canonical(t, ours[i]), canonical(t, theirs[i]); got != want {
			var g, w coltracepb.ExportTraceServiceRequest
			_ = proto.Unmarshal([]byte(got), &g)
			_ = proto.Unmarshal([]byte(want), &w)
			t.Fatalf("request %d differs from otlptrace's:\n got: %v\nwant: %v", i, &g, &w)
		}
	}
}

var (
	traceID = trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	t0      = time.Unix(1_700_000_000, 123)
)

func spanID(n byte) trace.SpanID { return trace.SpanID{0, 0, 0, 0, 0, 0, 0, n} }

// stubs is a batch with every kind of attribute value, events, links,
// statuses, remote and local parents, two resources and three scopes.
func stubs(batch byte) tracetest.SpanStubs {
	resA := resource.NewSchemaless(attribute.String("service.name", "a"))
	resB := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.43.0", attribute.String("service.name", "b"), attribute.Int("n", 2))
	scopes := []instrumentation.Scope{
		{Name: "rpcotel", Version: "1"},
		{Name: "interceptors", SchemaURL: "https://example/schema", Attributes: attribute.NewSet(attribute.Bool("x", true))},
		{},
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(99), TraceFlags: trace.FlagsSampled, Remote: true})
	state, _ := trace.ParseTraceState("k=v,other=1")
	var out tracetest.SpanStubs
	for i := range byte(7) {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(batch*10 + i), TraceFlags: trace.FlagsSampled, TraceState: state})
		s := tracetest.SpanStub{
			Name:        fmt.Sprintf("svc/M%d-%d", batch, i),
			SpanContext: sc,
			SpanKind:    trace.SpanKind(i % 6),
			StartTime:   t0.Add(time.Duration(i) * time.Millisecond),
			EndTime:     t0.Add(time.Duration(i+1) * time.Millisecond),
			Attributes: []attribute.KeyValue{
				attribute.String("rpc.method", fmt.Sprintf("svc/M%d", i)),
				attribute.Bool("b", i%2 == 0),
				attribute.Int64("i", int64(i)),
				attribute.Float64("f", float64(i)/3),
				attribute.StringSlice("trustmesh.caller.chain", []string{"spiffe://a/x", fmt.Sprint("spiffe://a/", i)}),
				attribute.BoolSlice("bs", []bool{true, false}),
				attribute.Int64Slice("is", []int64{1, 2, 3}),
				attribute.Float64Slice("fs", []float64{0.5}),
				attribute.StringSlice("empty", nil),
			},
			Resource:             resA,
			InstrumentationScope: scopes[int(i)%len(scopes)],
			DroppedAttributes:    int(i),
			DroppedEvents:        int(i) / 2,
			DroppedLinks:         int(i) / 3,
			ChildSpanCount:       int(i),
		}
		switch i % 3 {
		case 0:
			s.Parent = parent
			s.Status = sdktrace.Status{Code: codes.Error, Description: "boom"}
		case 1:
			s.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(98)})
			s.Status = sdktrace.Status{Code: codes.Ok}
			s.Resource = resB
		}
		if i == 4 {
			s.Events = []sdktrace.Event{{Name: "trustmesh.authz.denied", Time: t0, Attributes: []attribute.KeyValue{attribute.String("k", "v")}, DroppedAttributeCount: 1}}
			s.Links = []sdktrace.Link{{SpanContext: parent, Attributes: []attribute.KeyValue{attribute.Int("l", 1)}, DroppedAttributeCount: 2}}
			s.Attributes = append(s.Attributes, attribute.ByteSlice("bytes", []byte{1, 2}),
				attribute.Slice("nested", attribute.StringValue("x"), attribute.IntValue(1)),
				attribute.Map("map", attribute.String("k", "v")), attribute.KeyValue{Key: "empty-value"})
		}
		out = append(out, s)
	}
	return out
}

// TestOTLPTransformMatchesOtlptrace: every batch the exporter sends is the
// request otlptrace.Exporter sends for the same spans (up to the order of
// resource and scope groups), decoded as a collector decodes it, batch
// after batch, although the buffer behind one batch is reused by the next,
// and a batch with nil spans in it, an empty batch and a larger batch after
// a smaller one are handled alike.
func TestOTLPTransformMatchesOtlptrace(t *testing.T) {
	ours, theirs, err := exportBoth(t,
		stubs(1).Snapshots(),
		append(stubs(2).Snapshots()[:3], nil, stubs(3).Snapshots()[5]),
		nil,
		append(stubs(4).Snapshots(), append(stubs(5).Snapshots(), stubs(6).Snapshots()...)...),
		stubs(7).Snapshots()[:1],
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != 4 {
		t.Fatalf("%d requests, want 4 (the empty batch sends none)", len(ours))
	}
	sameRequests(t, ours, theirs)
}

// A batch of the spans the mesh makes (string and slice attributes, no
// events) allocates the per-batch group messages and one copy of each slice
// attribute (attribute.Value gives slices only as copies), nothing else.
func TestOTLPTransformAllocations(t *testing.T) {
	spans := make([]sdktrace.ReadOnlySpan, 0, 256)
	for len(spans) < 256 {
		for _, s := range stubs(1) {
			s.Events, s.Links = nil, nil
			s.SpanContext = s.SpanContext.WithTraceState(trace.TraceState{}) // the mesh's spans carry none
			s.Attributes = s.Attributes[:5]
			s.InstrumentationScope = instrumentation.Scope{Name: "rpcotel"}
			s.Resource = resource.NewSchemaless(attribute.String("service.name", "a"))
			spans = append(spans, tracetest.SpanStubs{s}.Snapshots()...)
		}
	}
	spans = spans[:256]
	lean := &otlpExporter{client: discard{}}
	ctx := context.Background()
	_ = lean.ExportSpans(ctx, spans)
	// Each span has one slice attribute (the caller chain).
	if n := testing.AllocsPerRun(20, func() { _ = lean.ExportSpans(ctx, spans) }); n > 256+10 {
		t.Fatalf("a batch of 256 spans: %v allocations, want at most 266 (the groups and 256 slice copies)", n)
	}
}

type discard struct{}

func (discard) Start(context.Context) error                                  { return nil }
func (discard) Stop(context.Context) error                                   { return nil }
func (discard) UploadTraces(context.Context, []*tracepb.ResourceSpans) error { return nil }

// failing is a client whose uploads fail.
type failing struct{ discard }

func (failing) UploadTraces(context.Context, []*tracepb.ResourceSpans) error {
	return errors.New("collector unreachable")
}

func TestOTLPExportErrorIsWrapped(t *testing.T) {
	lean := &otlpExporter{client: failing{}}
	err := lean.ExportSpans(context.Background(), stubs(1).Snapshots())
	if err == nil || err.Error() != "traces export: collector unreachable" {
		t.Fatalf("export error %v", err)
	}
}

// TestOTLPHTTPEndToEnd: Setup's exporter sends spans over OTLP/HTTP
// (protobuf, the default protocol) to a collector endpoint given by
// OTEL_EXPORTER_OTLP_ENDPOINT, as autoexport's would.
func TestOTLPHTTPEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					got = append(got, s.GetName())
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = io.Copy(w, bytes.NewReader(nil))
	}))
	defer srv.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	p, err := Setup(context.Background(), "e2e", "1", WithoutGlobal())
	if err != nil {
		t.Fatal(err)
	}
	tr := p.TracerProvider.Tracer("test")
	for i := range 3 {
		_, s := tr.Start(context.Background(), fmt.Sprint("span-", i))
		s.End()
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if !slices.Equal(got, []string{"span-0", "span-1", "span-2"}) {
		t.Fatalf("collector received %q", got)
	}
}

// randomSpans is a batch of n spans with attributes of random kinds and
// slice lengths, the mesh's resource and scopes.
func randomSpans(r *rand.Rand, n int) []sdktrace.ReadOnlySpan {
	maxSlice := []int{1, 3, 50, 150}[r.IntN(4)] // batches with short slices, then long ones
	res := resource.NewSchemaless(attribute.String("service.name", "inventory"))
	scopes := []instrumentation.Scope{{Name: "rpcotel"}, {Name: "interceptors"}}
	var stubs tracetest.SpanStubs
	for i := range n {
		var attrs []attribute.KeyValue
		for j := range r.IntN(12) {
			k := attribute.Key(fmt.Sprint("k", j))
			switch r.IntN(8) {
			case 0:
				attrs = append(attrs, k.Bool(r.IntN(2) == 0))
			case 1:
				attrs = append(attrs, k.Int64(r.Int64()))
			case 2:
				attrs = append(attrs, k.Float64(r.Float64()))
			case 3:
				ss := make([]string, r.IntN(maxSlice))
				for e := range ss {
					ss[e] = fmt.Sprint("spiffe://shop.example/", e)
				}
				attrs = append(attrs, k.StringSlice(ss))
			case 4:
				attrs = append(attrs, k.Int64Slice(make([]int64, r.IntN(maxSlice))))
			case 5:
				attrs = append(attrs, k.BoolSlice(make([]bool, r.IntN(5))), k.Float64Slice(make([]float64, r.IntN(5))))
			default:
				attrs = append(attrs, k.String(fmt.Sprint("v", r.Int())))
			}
		}
		stubs = append(stubs, tracetest.SpanStub{
			Name:                 fmt.Sprint("svc/M", i),
			SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(byte(i)), TraceFlags: trace.FlagsSampled}),
			StartTime:            t0,
			EndTime:              t0.Add(time.Millisecond),
			Attributes:           attrs,
			Resource:             res,
			InstrumentationScope: scopes[r.IntN(len(scopes))],
		})
	}
	return stubs.Snapshots()
}

// TestOTLPTransformRandomShapes: batch after batch of random shapes, every
// request is otlptrace's: messages whose length takes one, two or three
// bytes (a 20 kB value), at every depth. (An earlier transform carved
// messages out of slabs sized from the batch before, and once indexed past
// them: a slice attribute longer than the last batch's took the room of the
// attributes after it; those shapes stay.)
func TestOTLPTransformRandomShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// First what overran the slabs once: a long slice, the same again, then
	// a longer one with a plain attribute after it.
	shaped := func(n int, plain bool) []sdktrace.ReadOnlySpan {
		attrs := []attribute.KeyValue{attribute.StringSlice("chain", make([]string, n))}
		if plain {
			attrs = append(attrs, attribute.String("after", "x"))
		}
		return tracetest.SpanStubs{{Name: "m", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(1)}), Attributes: attrs}}.Snapshots()
	}
	big := tracetest.SpanStubs{{Name: "big", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(2)}),
		Attributes: []attribute.KeyValue{attribute.String("s", strings.Repeat("x", 20_000)), attribute.StringSlice("l", []string{strings.Repeat("y", 200), "z"})}}}.Snapshots()
	batches := [][]sdktrace.ReadOnlySpan{shaped(100, false), shaped(100, false), shaped(125, true), big, append(big, shaped(3, true)...)}
	for range 300 {
		batches = append(batches, randomSpans(r, 1+r.IntN(64)))
	}
	ours, theirs, err := exportBoth(t, batches...)
	if err != nil {
		t.Fatal(err)
	}
	sameRequests(t, ours, theirs)
}

// TestOTLPInvalidUTF8IsReplaced: a string that is not valid UTF-8 (in an
// attribute value, a key, a span name) is sent with its bad bytes
// replaced, where otlptrace fails the whole batch; the other spans of the
// batch are sent unchanged.
func TestOTLPInvalidUTF8IsReplaced(t *testing.T) {
	ctx := context.Background()
	bad := tracetest.SpanStubs{{
		Name:        "svc/\xffM",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(1), TraceFlags: trace.FlagsSampled}),
		Attributes:  []attribute.KeyValue{attribute.String("k\xfe", "v\xc3"), attribute.StringSlice("chain", []string{"ok", "\xe2\x82"})},
	}}.Snapshots()
	batch := append(bad, stubs(1).Snapshots()...)
	ref, err := otlptrace.New(ctx, &capture{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.ExportSpans(ctx, batch); err == nil {
		t.Fatal("otlptrace exported invalid UTF-8: the difference this test documents is gone")
	}
	ours := &capture{}
	if err := (&otlpExporter{client: ours}).ExportSpans(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var got *tracepb.Span
	n := 0
	for _, rs := range ours.reqs[0] {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				n++
				if bytes.Equal(s.SpanId, []byte{0, 0, 0, 0, 0, 0, 0, 1}) {
					got = s
				}
			}
		}
	}
	if n != len(batch) || got == nil {
		t.Fatalf("%d spans sent of %d (the bad one found: %v)", n, len(batch), got != nil)
	}
	kv := got.Attributes
	if got.Name != "svc/\uFFFDM" || kv[0].Key != "k\uFFFD" || kv[0].Value.GetStringValue() != "v\uFFFD" ||
		kv[1].Value.GetArrayValue().Values[1].GetStringValue() != "\uFFFD" {
		t.Fatalf("sent %q with %v", got.Name, kv)
	}
}

// marshalling is a client that marshals each request, as the real ones do.
type marshalling struct{ discard }

func (marshalling) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	_, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	return err
}

// BenchmarkOTLPExport: a batch of 512 spans like the mesh's server spans
// (eight attributes, one of them the caller chain), transformed and
// marshalled, by otlptrace.Exporter and by otelenv's exporter; ns/op and
// allocs/op are per span.
func BenchmarkOTLPExport(b *testing.B) {
	spans := make([]sdktrace.ReadOnlySpan, 0, 512)
	res := resource.NewSchemaless(attribute.String("service.name", "inventory"), attribute.String("service.version", "dev"))
	for i := range 512 {
		spans = append(spans, tracetest.SpanStubs{{
			Name:        "shop.inventory.v1.InventoryService/ListProducts",
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(byte(i)), TraceFlags: trace.FlagsSampled}),
			Parent:      trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(200), TraceFlags: trace.FlagsSampled, Remote: true}),
			SpanKind:    trace.SpanKindServer,
			StartTime:   t0,
			EndTime:     t0.Add(40 * time.Microsecond),
			Attributes: []attribute.KeyValue{
				attribute.String("rpc.system.name", "grpc"),
				attribute.String("rpc.method", "shop.inventory.v1.InventoryService/ListProducts"),
				attribute.String("trustmesh.caller", "spiffe://shop.example/gateway"),
				attribute.String("trustmesh.authz.decision", "allow"),
				attribute.String("trustmesh.authz.rule", "gateway-lists-products"),
				attribute.String("trustmesh.txn.subject", "spiffe://shop.example/user/alice"),
				attribute.StringSlice("trustmesh.caller.chain", []string{"spiffe://shop.example/user/alice", "spiffe://shop.example/gateway"}),
				attribute.String("rpc.response.status_code", "OK"),
			},
			Resource:             res,
			InstrumentationScope: instrumentation.Scope{Name: "github.com/trustmesh/trustmesh/internal/rpcotel"},
		}}.Snapshots()...)
	}
	ctx := context.Background()
	ref, err := otlptrace.New(ctx, marshalling{})
	if err != nil {
		b.Fatal(err)
	}
	for _, ex := range []struct {
		name string
		exp  sdktrace.SpanExporter
	}{{"otlptrace", ref}, {"otelenv", &otlpExporter{client: marshalling{}}}} {
		b.Run(ex.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := ex.exp.ExportSpans(ctx, spans); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
		})
	}
}

// FuzzOTLPEncoding: for any span name, attribute key and values (valid
// UTF-8: otlptrace refuses the rest, see TestOTLPInvalidUTF8IsReplaced),
// the request the exporter sends decodes to otlptrace's.
func FuzzOTLPEncoding(f *testing.F) {
	f.Add("svc/M", "k", "v", int64(-1), 0.5, true, []byte{1, 2}, uint8(3))
	f.Add("", "", "", int64(0), 0.0, false, []byte(nil), uint8(0))
	f.Add(strings.Repeat("n", 300), "ключ", strings.Repeat("é", 5000), int64(1)<<62, -1e300, true, make([]byte, 200), uint8(255))
	f.Fuzz(func(t *testing.T, name, key, val string, i int64, fl float64, b bool, raw []byte, n uint8) {
		if !utf8.ValidString(name) || !utf8.ValidString(key) || !utf8.ValidString(val) {
			t.Skip()
		}
		vals := make([]string, n%20)
		for j := range vals {
			vals[j] = val[:len(val)*j/len(vals)]
			if !utf8.ValidString(vals[j]) {
				vals[j] = val
			}
		}
		k := attribute.Key(key)
		spans := tracetest.SpanStubs{{
			Name:        name,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID(n), TraceFlags: trace.TraceFlags(n)}),
			StartTime:   t0,
			EndTime:     t0.Add(time.Duration(i)),
			Attributes: []attribute.KeyValue{k.String(val), k.Int64(i), k.Float64(fl), k.Bool(b), k.StringSlice(vals),
				attribute.ByteSlice(key, raw), attribute.Int64Slice(key, []int64{i, -i}), attribute.Map(key, k.String(val))},
			Status:               sdktrace.Status{Code: codes.Code(n % 3), Description: val},
			Events:               []sdktrace.Event{{Name: val, Time: t0, Attributes: []attribute.KeyValue{k.String(name)}}},
			Resource:             resource.NewSchemaless(k.String(val)),
			InstrumentationScope: instrumentation.Scope{Name: name, Version: val},
		}}.Snapshots()
		ours, theirs, err := exportBoth(t, spans)
		if err != nil {
			t.Skip() // otlptrace refuses it: nothing to compare
		}
		sameRequests(t, ours, theirs)
	})
}
