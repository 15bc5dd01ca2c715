package otelenv

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// newOTLPExporter is the span exporter of OTEL_TRACES_EXPORTER=otlp: the
// OTLP client autoexport would build (otlptracehttp or otlptracegrpc, as
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL say,
// http/protobuf by default; each client reads the rest of the OTEL_EXPORTER_OTLP_*
// variables itself), fed by [otlpExporter] instead of otlptrace.Exporter.
func newOTLPExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	key := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	proto := os.Getenv(key)
	if proto == "" {
		key = "OTEL_EXPORTER_OTLP_PROTOCOL"
		proto = os.Getenv(key)
	}
	var client otlptrace.Client
	switch proto {
	case "", "http/protobuf":
		client = otlptracehttp.NewClient()
	case "grpc":
		client = otlptracegrpc.NewClient()
	default:
		return nil, fmt.Errorf("%s=%q: want grpc or http/protobuf", key, proto)
	}
	if err := client.Start(ctx); err != nil {
		return nil, err
	}
	return &otlpExporter{client: client}, nil
}

// otlpExporter is otlptrace.Exporter with a cheaper transform: the OTLP
// messages of a batch (spans, their status, attributes and values, the ID
// bytes) are carved out of slabs that are kept from batch to batch, and the
// resource and scope messages are built once, so that exporting a span
// allocates nothing in the common case (string, bool, integer, float and
// slice-of-those attributes; events, links, and nested or map values are
// built as otlptrace builds them). The messages are the same as
// otlptrace's (the tests compare them), resource and scope groups in the
// order first seen. The OTLP clients marshal a request before UploadTraces
// returns, so the slabs can be reused by the next batch; exports run one at
// a time.
type otlpExporter struct {
	client otlptrace.Client

	mu        sync.Mutex // one export at a time: it owns the slabs
	slabs     slabs
	resources map[attribute.Distinct]*resourcepb.Resource
	scopes    map[instrumentation.Scope]*commonpb.InstrumentationScope

	stopOnce sync.Once
	stopErr  error
}

func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	rss := e.transform(spans)
	if len(rss) == 0 {
		return nil
	}
	err := e.client.UploadTraces(ctx, rss)
	e.slabs.release()
	if err != nil {
		return fmt.Errorf("traces export: %w", err)
	}
	return nil
}

func (e *otlpExporter) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { e.stopErr = e.client.Stop(ctx) })
	return e.stopErr
}

// maxCached bounds the resource and scope caches (a process has one
// resource and a few scopes; past the bound they are built per batch).
const maxCached = 64

func (e *otlpExporter) resource(r *resource.Resource) *resourcepb.Resource {
	if r == nil {
		return nil
	}
	k := r.Equivalent()
	if pb, ok := e.resources[k]; ok {
		return pb
	}
	pb := &resourcepb.Resource{Attributes: iterKeyValues(r.Iter())}
	if e.resources == nil {
		e.resources = map[attribute.Distinct]*resourcepb.Resource{}
	}
	if len(e.resources) < maxCached {
		e.resources[k] = pb
	}
	return pb
}

func (e *otlpExporter) scope(s instrumentation.Scope) *commonpb.InstrumentationScope {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	if pb, ok := e.scopes[s]; ok {
		return pb
	}
	pb := &commonpb.InstrumentationScope{Name: s.Name, Version: s.Version, Attributes: iterKeyValues(s.Attributes.Iter())}
	if e.scopes == nil {
		e.scopes = map[instrumentation.Scope]*commonpb.InstrumentationScope{}
	}
	if len(e.scopes) < maxCached {
		e.scopes[s] = pb
	}
	return pb
}

// transform is tracetransform.Spans, into the slabs: spans grouped by
// resource, then by instrumentation scope.
func (e *otlpExporter) transform(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	e.slabs.reserve(spans)
	type resGroup struct {
		res attribute.Distinct
		rs  *tracepb.ResourceSpans
	}
	type scopeGroup struct {
		res   attribute.Distinct
		scope instrumentation.Scope
		ss    *tracepb.ScopeSpans
	}
	var resGroups []resGroup
	var scopeGroups []scopeGroup
	var out []*tracepb.ResourceSpans
	for _, sd := range spans {
		if sd == nil {
			continue
		}
		res, scope := sd.Resource().Equivalent(), sd.InstrumentationScope()
		var ss *tracepb.ScopeSpans
		for _, g := range scopeGroups {
			if g.res == res && g.scope == scope {
				ss = g.ss
				break
			}
		}
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: e.scope(scope), Spans: make([]*tracepb.Span, 0, len(spans)), SchemaUrl: scope.SchemaURL}
			scopeGroups = append(scopeGroups, scopeGroup{res: res, scope: scope, ss: ss})
			var rs *tracepb.ResourceSpans
			for _, g := range resGroups {
				if g.res == res {
					rs = g.rs
					break
				}
			}
			if rs == nil {
				rs = &tracepb.ResourceSpans{Resource: e.resource(sd.Resource()), SchemaUrl: sd.Resource().SchemaURL()}
				resGroups = append(resGroups, resGroup{res: res, rs: rs})
				out = append(out, rs)
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, e.slabs.span(sd))
	}
	return out
}

// slabs are the messages of one batch, reused by the next.
type slabs struct {
	spans   []tracepb.Span
	status  []tracepb.Status
	kvs     []commonpb.KeyValue
	kvPtrs  []*commonpb.KeyValue
	vals    []commonpb.AnyValue
	valPtrs []*commonpb.AnyValue
	strs    []commonpb.AnyValue_StringValue
	ints    []commonpb.AnyValue_IntValue
	bools   []commonpb.AnyValue_BoolValue
	doubles []commonpb.AnyValue_DoubleValue
	arrays  []commonpb.AnyValue_ArrayValue
	arrVals []commonpb.ArrayValue
	ids     []byte

	elems, lastElems int // slice attribute elements in this batch and the last one

	// next free index in each slab
	nSpan, nStatus, nKV, nKVPtr, nVal, nValPtr, nStr, nInt, nBool, nDouble, nArr, nArrW, nID int
}

// grow returns b with length at least n: reallocated only when it is
// shorter, before anything points into it.
func grow[T any](b []T, n int) []T {
	if len(b) >= n {
		return b
	}
	return make([]T, n+n/4)
}

// reserve sizes the slabs for spans, so that nothing taken from them
// moves while the batch is built. The elements of slice attributes are
// not counted (reading a slice attribute copies it): the slabs keep room
// for as many as the last batch had, and a batch with more builds the
// extra ones as otlptrace does.
func (s *slabs) reserve(spans []sdktrace.ReadOnlySpan) {
	var kvs, slices int
	for _, sd := range spans {
		if sd == nil {
			continue
		}
		for _, kv := range sd.Attributes() {
			kvs++
			switch kv.Value.Type() {
			case attribute.STRINGSLICE, attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE:
				slices++
			}
		}
	}
	elems := max(s.lastElems, 2*slices)
	vals := kvs + elems
	n := len(spans)
	s.spans, s.status = grow(s.spans, n), grow(s.status, n)
	s.kvs, s.kvPtrs = grow(s.kvs, kvs), grow(s.kvPtrs, kvs)
	s.vals, s.valPtrs = grow(s.vals, vals), grow(s.valPtrs, elems)
	s.strs, s.ints, s.bools, s.doubles = grow(s.strs, vals), grow(s.ints, vals), grow(s.bools, vals), grow(s.doubles, vals)
	s.arrays, s.arrVals = grow(s.arrays, slices), grow(s.arrVals, slices)
	s.ids = grow(s.ids, 24*n)
}

// release forgets what the last batch took (the next one overwrites it).
func (s *slabs) release() {
	s.lastElems, s.elems = s.elems, 0
	s.nSpan, s.nStatus, s.nKV, s.nKVPtr, s.nVal, s.nValPtr, s.nStr, s.nInt, s.nBool, s.nDouble, s.nArr, s.nArrW, s.nID = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
}

func (s *slabs) id(b []byte) []byte {
	if s.nID+len(b) > len(s.ids) {
		return append([]byte(nil), b...)
	}
	p := s.ids[s.nID : s.nID+len(b) : s.nID+len(b)]
	copy(p, b)
	s.nID += len(b)
	return p
}

// take returns the next free element of slab, or a new one once the slab
// is spent: a batch never indexes past what was reserved, whatever the
// shape of its attributes. The caller sets every field (with a composite
// literal, for messages).
func take[T any](slab []T, next *int) *T {
	if *next >= len(slab) {
		return new(T)
	}
	p := &slab[*next]
	*next++
	return p
}

func (s *slabs) span(sd sdktrace.ReadOnlySpan) *tracepb.Span {
	sc := sd.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	st := sd.Status()
	status := take(s.status, &s.nStatus)
	*status = tracepb.Status{Code: statusCode(st.Code), Message: st.Description}
	p := take(s.spans, &s.nSpan)
	*p = tracepb.Span{
		TraceId:                s.id(tid[:]),
		SpanId:                 s.id(sid[:]),
		TraceState:             sc.TraceState().String(),
		Status:                 status,
		StartTimeUnixNano:      uint64(max(0, sd.StartTime().UnixNano())), //nolint:gosec // checked
		EndTimeUnixNano:        uint64(max(0, sd.EndTime().UnixNano())),   //nolint:gosec // checked
		Links:                  links(sd.Links()),
		Kind:                   spanKind(sd.SpanKind()),
		Name:                   sd.Name(),
		Attributes:             s.keyValues(sd.Attributes()),
		Events:                 events(sd.Events()),
		DroppedAttributesCount: clampUint32(sd.DroppedAttributes()),
		DroppedEventsCount:     clampUint32(sd.DroppedEvents()),
		DroppedLinksCount:      clampUint32(sd.DroppedLinks()),
	}
	parent := sd.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		p.ParentSpanId = s.id(psid[:])
	}
	p.Flags = spanFlags(sc.TraceFlags(), parent)
	return p
}

// list carves a list of n pointers out of slab, or allocates one when the
// slab has no room for it.
func list[T any](slab []*T, next *int, n int) []*T {
	if *next+n > len(slab) {
		return make([]*T, 0, n)
	}
	l := slab[*next : *next : *next+n]
	*next += n
	return l
}

func (s *slabs) keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := list(s.kvPtrs, &s.nKVPtr, len(attrs))
	for _, kv := range attrs {
		p := take(s.kvs, &s.nKV)
		*p = commonpb.KeyValue{Key: string(kv.Key), Value: s.value(kv.Value)}
		out = append(out, p)
	}
	return out
}

func (s *slabs) value(v attribute.Value) *commonpb.AnyValue {
	p := take(s.vals, &s.nVal)
	switch v.Type() {
	case attribute.STRING:
		w := take(s.strs, &s.nStr)
		*w = commonpb.AnyValue_StringValue{StringValue: v.AsString()}
		*p = commonpb.AnyValue{Value: w}
	case attribute.BOOL:
		w := take(s.bools, &s.nBool)
		*w = commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
		*p = commonpb.AnyValue{Value: w}
	case attribute.INT64:
		w := take(s.ints, &s.nInt)
		*w = commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
		*p = commonpb.AnyValue{Value: w}
	case attribute.FLOAT64:
		w := take(s.doubles, &s.nDouble)
		*w = commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
		*p = commonpb.AnyValue{Value: w}
	case attribute.STRINGSLICE:
		*p = commonpb.AnyValue{Value: slabArray(s, v.AsStringSlice(), func(e string) *commonpb.AnyValue { return s.value(attribute.StringValue(e)) })}
	case attribute.BOOLSLICE:
		*p = commonpb.AnyValue{Value: slabArray(s, v.AsBoolSlice(), func(e bool) *commonpb.AnyValue { return s.value(attribute.BoolValue(e)) })}
	case attribute.INT64SLICE:
		*p = commonpb.AnyValue{Value: slabArray(s, v.AsInt64Slice(), func(e int64) *commonpb.AnyValue { return s.value(attribute.Int64Value(e)) })}
	case attribute.FLOAT64SLICE:
		*p = commonpb.AnyValue{Value: slabArray(s, v.AsFloat64Slice(), func(e float64) *commonpb.AnyValue { return s.value(attribute.Float64Value(e)) })}
	default:
		return value(v) // bytes, nested slices and maps, empty, invalid: as otlptrace (p stays unused)
	}
	return p
}

// slabArray is the array of elems, into the slabs (see take and list).
func slabArray[T any](s *slabs, elems []T, of func(T) *commonpb.AnyValue) *commonpb.AnyValue_ArrayValue {
	s.elems += len(elems)
	l := list(s.valPtrs, &s.nValPtr, len(elems))
	for _, e := range elems {
		l = append(l, of(e))
	}
	arr := take(s.arrVals, &s.nArr)
	*arr = commonpb.ArrayValue{Values: l}
	w := take(s.arrays, &s.nArrW)
	*w = commonpb.AnyValue_ArrayValue{ArrayValue: arr}
	return w
}

// What follows builds messages as otlptrace's transform does, allocating:
// for what the slabs do not hold.

func keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: value(kv.Value)})
	}
	return out
}

func iterKeyValues(it attribute.Iterator) []*commonpb.KeyValue {
	if it.Len() == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, it.Len())
	for it.Next() {
		kv := it.Attribute()
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: value(kv.Value)})
	}
	return out
}

func value(v attribute.Value) *commonpb.AnyValue {
	av := new(commonpb.AnyValue)
	switch v.Type() {
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.STRING:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.AsString()}
	case attribute.BYTESLICE:
		av.Value = &commonpb.AnyValue_BytesValue{BytesValue: v.AsByteSlice()}
	case attribute.BOOLSLICE:
		av.Value = array(v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		av.Value = array(v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		av.Value = array(v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		av.Value = array(v.AsStringSlice(), attribute.StringValue)
	case attribute.SLICE:
		av.Value = array(v.AsSlice(), func(v attribute.Value) attribute.Value { return v })
	case attribute.MAP:
		av.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: keyValues(v.AsMap())}}
	case attribute.EMPTY:
	default:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return av
}

func array[T any](vals []T, of func(T) attribute.Value) *commonpb.AnyValue_ArrayValue {
	out := make([]*commonpb.AnyValue, len(vals))
	for i, v := range vals {
		out[i] = value(of(v))
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: out}}
}

func links(ls []sdktrace.Link) []*tracepb.Span_Link {
	if len(ls) == 0 {
		return nil
	}
	out := make([]*tracepb.Span_Link, 0, len(ls))
	for _, l := range ls {
		tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		out = append(out, &tracepb.Span_Link{
			TraceId:                append([]byte(nil), tid[:]...),
			SpanId:                 append([]byte(nil), sid[:]...),
			Attributes:             keyValues(l.Attributes),
			DroppedAttributesCount: clampUint32(l.DroppedAttributeCount),
			Flags:                  spanFlags(l.SpanContext.TraceFlags(), l.SpanContext),
		})
	}
	return out
}

func events(es []sdktrace.Event) []*tracepb.Span_Event {
	if len(es) == 0 {
		return nil
	}
	out := make([]*tracepb.Span_Event, len(es))
	for i, e := range es {
		out[i] = &tracepb.Span_Event{
			Name:                   e.Name,
			TimeUnixNano:           uint64(max(0, e.Time.UnixNano())), //nolint:gosec // checked
			Attributes:             keyValues(e.Attributes),
			DroppedAttributesCount: clampUint32(e.DroppedAttributeCount),
		}
	}
	return out
}

func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	flags := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if parent.IsRemote() {
		flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return flags
}

func clampUint32(v int) uint32 {
	if v < 0 {
		return 0
	}
	if int64(v) > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v) //nolint:gosec // checked
}

func statusCode(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}

func spanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}
