package otelenv

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// otlpExporter is otlptrace.Exporter with a cheaper transform: it writes
// the OTLP protobuf encoding of a batch itself, into a buffer kept from
// batch to batch, instead of building a message per span, attribute and
// value and having the client marshal them (otlptrace's transform and the
// marshalling cost ~4.5 µs and ~30 allocations per span of the mesh's). The
// client still sends the request (the same OTEL_EXPORTER_OTLP_* settings,
// retries, TLS, compression): each ResourceSpans it gets is an empty message
// whose unknown fields hold the encoded resource, scope groups and spans,
// which protobuf writes out as they are, so that the bytes on the wire
// are those of the full message. The encoding is otlptrace's (the tests
// decode both and compare), fields in number order as protobuf-go writes
// them, resource and scope groups in the order first seen, with one
// difference: a string that is not valid UTF-8 (an attribute value, a
// name) is sent with its invalid bytes replaced by U+FFFD, where otlptrace
// fails the whole batch (protobuf refuses to marshal it); and the clients'
// experimental self-observability (OTEL_GO_X_OBSERVABILITY) counts no
// spans in the requests, whose spans it does not see. The OTLP
// clients marshal a request before UploadTraces returns, so the buffer
// is reused by the next batch; exports run one at a time.
type otlpExporter struct {
	client otlptrace.Client

	mu  sync.Mutex // one export at a time: it owns what follows
	buf []byte
	rss []*tracepb.ResourceSpans // the messages the encoding is carried in, reused
	grp []int32                  // each span's group, in the batch being encoded

	resources map[attribute.Distinct][]byte    // encoded ResourceSpans.resource fields
	scopes    map[instrumentation.Scope][]byte // encoded ScopeSpans.scope fields

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
	for _, rs := range rss {
		rs.ProtoReflect().SetUnknown(nil) // let go of the buffer, for the next batch
	}
	if cap(e.buf) > maxKeptBuffer {
		e.buf = nil
	}
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
// resource and a few scopes; past the bound they are encoded per batch).
const maxCached = 64

// maxKeptBuffer is the largest encoding buffer kept for the next batch (a
// full batch of 512 of the mesh's spans takes about 250 KB).
const maxKeptBuffer = 4 << 20

// Field numbers of the OTLP messages written here (opentelemetry-proto's
// trace.proto, common.proto, resource.proto).
const (
	fResourceSpansResource, fResourceSpansScopeSpans, fResourceSpansSchemaURL = 1, 2, 3
	fScopeSpansScope, fScopeSpansSpans, fScopeSpansSchemaURL                  = 1, 2, 3
	fResourceAttributes                                                       = 1
	fScopeName, fScopeVersion, fScopeAttributes                               = 1, 2, 3

	fSpanTraceID, fSpanSpanID, fSpanTraceState, fSpanParentSpanID, fSpanName, fSpanKind = 1, 2, 3, 4, 5, 6
	fSpanStart, fSpanEnd, fSpanAttributes, fSpanDroppedAttributes, fSpanEvents          = 7, 8, 9, 10, 11
	fSpanDroppedEvents, fSpanLinks, fSpanDroppedLinks, fSpanStatus, fSpanFlags          = 12, 13, 14, 15, 16
	fStatusMessage, fStatusCode                                                         = 2, 3
	fEventTime, fEventName, fEventAttributes, fEventDroppedAttributes                   = 1, 2, 3, 4
	fLinkTraceID, fLinkSpanID, fLinkAttributes, fLinkDroppedAttributes, fLinkFlags      = 1, 2, 4, 5, 6

	fKeyValueKey, fKeyValueValue                                                = 1, 2
	fAnyString, fAnyBool, fAnyInt, fAnyDouble, fAnyArray, fAnyKvlist, fAnyBytes = 1, 2, 3, 4, 5, 6, 7
	fArrayValues, fKvlistValues                                                 = 1, 1
)

// group is the spans of one resource and scope in a batch.
type group struct {
	res   attribute.Distinct
	scope instrumentation.Scope
	rs    int // index of its resource's first group
}

// transform encodes spans as OTLP ResourceSpans (tracetransform.Spans):
// spans grouped by resource, then by instrumentation scope.
func (e *otlpExporter) transform(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	var groups []group
	e.grp = e.grp[:0]
	for _, sd := range spans {
		if sd == nil {
			e.grp = append(e.grp, -1)
			continue
		}
		res, scope := sd.Resource().Equivalent(), sd.InstrumentationScope()
		g := slices.IndexFunc(groups, func(g group) bool { return g.res == res && g.scope == scope })
		if g < 0 {
			g = len(groups)
			rs := slices.IndexFunc(groups, func(g group) bool { return g.res == res })
			if rs < 0 {
				rs = g
			}
			groups = append(groups, group{res: res, scope: scope, rs: rs})
		}
		e.grp = append(e.grp, int32(g)) //nolint:gosec // at most len(spans)
	}
	b := e.buf[:0]
	var bounds []int // [start, end) of each resource's encoding in b
	for r := range groups {
		if groups[r].rs != r {
			continue // a later scope of a resource already written
		}
		start := len(b)
		first := spans[slices.Index(e.grp, int32(r))] //nolint:gosec // at most len(spans)
		b = append(b, e.resource(first.Resource())...)
		for g := r; g < len(groups); g++ {
			if groups[g].rs != r {
				continue
			}
			var at int
			b, at = openField(b, fResourceSpansScopeSpans)
			b = append(b, e.scope(groups[g].scope)...)
			for i, sd := range spans {
				if e.grp[i] != int32(g) { //nolint:gosec // at most len(spans)
					continue
				}
				var sat int
				b, sat = openField(b, fScopeSpansSpans)
				b = appendSpan(b, sd)
				b = closeField(b, sat)
			}
			b = appendString(b, fScopeSpansSchemaURL, groups[g].scope.SchemaURL)
			b = closeField(b, at)
		}
		b = appendString(b, fResourceSpansSchemaURL, first.Resource().SchemaURL())
		bounds = append(bounds, start, len(b))
	}
	e.buf = b
	out := e.rss[:0]
	for i := 0; i < len(bounds); i += 2 {
		if len(out) == cap(out) {
			out = append(out, new(tracepb.ResourceSpans))
		} else {
			out = out[:len(out)+1]
		}
		out[len(out)-1].ProtoReflect().SetUnknown(protoreflect.RawFields(b[bounds[i]:bounds[i+1]:bounds[i+1]]))
	}
	e.rss = out
	return out
}

// resource is the encoded resource field of r's ResourceSpans (none for a
// nil resource, an empty message for one without attributes), cached.
func (e *otlpExporter) resource(r *resource.Resource) []byte {
	if r == nil {
		return nil
	}
	k := r.Equivalent()
	if b, ok := e.resources[k]; ok {
		return b
	}
	b, at := openField(nil, fResourceSpansResource)
	for it := r.Iter(); it.Next(); {
		b = appendKeyValue(b, fResourceAttributes, it.Attribute())
	}
	b = closeField(b, at)
	if e.resources == nil {
		e.resources = map[attribute.Distinct][]byte{}
	}
	if len(e.resources) < maxCached {
		e.resources[k] = b
	}
	return b
}

// scope is the encoded scope field of s's ScopeSpans (none for the zero
// scope), cached.
func (e *otlpExporter) scope(s instrumentation.Scope) []byte {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	if b, ok := e.scopes[s]; ok {
		return b
	}
	b, at := openField(nil, fScopeSpansScope)
	b = appendString(b, fScopeName, s.Name)
	b = appendString(b, fScopeVersion, s.Version)
	for it := s.Attributes.Iter(); it.Next(); {
		b = appendKeyValue(b, fScopeAttributes, it.Attribute())
	}
	b = closeField(b, at)
	if e.scopes == nil {
		e.scopes = map[instrumentation.Scope][]byte{}
	}
	if len(e.scopes) < maxCached {
		e.scopes[s] = b
	}
	return b
}

// appendSpan appends the fields of sd's Span message.
func appendSpan(b []byte, sd sdktrace.ReadOnlySpan) []byte {
	sc := sd.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, fSpanTraceState, ts.String())
	}
	parent := sd.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, fSpanParentSpanID, psid[:])
	}
	b = appendString(b, fSpanName, sd.Name())
	b = appendVarint(b, fSpanKind, uint64(spanKind(sd.SpanKind())))
	b = appendFixed64(b, fSpanStart, uint64(max(0, sd.StartTime().UnixNano()))) //nolint:gosec // checked
	b = appendFixed64(b, fSpanEnd, uint64(max(0, sd.EndTime().UnixNano())))     //nolint:gosec // checked
	for _, kv := range sd.Attributes() {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	b = appendVarint(b, fSpanDroppedAttributes, uint64(clampUint32(sd.DroppedAttributes())))
	for _, ev := range sd.Events() {
		var at int
		b, at = openField(b, fSpanEvents)
		b = appendFixed64(b, fEventTime, uint64(max(0, ev.Time.UnixNano()))) //nolint:gosec // checked
		b = appendString(b, fEventName, ev.Name)
		for _, kv := range ev.Attributes {
			b = appendKeyValue(b, fEventAttributes, kv)
		}
		b = appendVarint(b, fEventDroppedAttributes, uint64(clampUint32(ev.DroppedAttributeCount)))
		b = closeField(b, at)
	}
	b = appendVarint(b, fSpanDroppedEvents, uint64(clampUint32(sd.DroppedEvents())))
	for _, l := range sd.Links() {
		var at int
		b, at = openField(b, fSpanLinks)
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		b = appendBytes(b, fLinkTraceID, ltid[:])
		b = appendBytes(b, fLinkSpanID, lsid[:])
		for _, kv := range l.Attributes {
			b = appendKeyValue(b, fLinkAttributes, kv)
		}
		b = appendVarint(b, fLinkDroppedAttributes, uint64(clampUint32(l.DroppedAttributeCount)))
		b = appendFixed32(b, fLinkFlags, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		b = closeField(b, at)
	}
	b = appendVarint(b, fSpanDroppedLinks, uint64(clampUint32(sd.DroppedLinks())))
	st := sd.Status()
	var at int
	b, at = openField(b, fSpanStatus) // always there, as otlptrace sets it
	b = appendString(b, fStatusMessage, st.Description)
	b = appendVarint(b, fStatusCode, uint64(statusCode(st.Code)))
	b = closeField(b, at)
	return appendFixed32(b, fSpanFlags, spanFlags(sc.TraceFlags(), parent))
}

// appendKeyValue appends kv as a KeyValue field num; its value is always
// there, as otlptrace sets it.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	b, at := openField(b, num)
	b = appendString(b, fKeyValueKey, string(kv.Key))
	var vat int
	b, vat = openField(b, fKeyValueValue)
	b = appendAnyValue(b, kv.Value)
	b = closeField(b, vat)
	return closeField(b, at)
}

// appendAnyValue appends the fields of v's AnyValue: the oneof member is
// written even when it holds its type's zero value.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64())) //nolint:gosec // two's complement, as protobuf's int64
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return appendStringAlways(b, fAnyString, v.AsString())
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, fAnyBytes, protowire.BytesType)
		return protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		return appendArray(b, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		return appendArray(b, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		return appendArray(b, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		return appendArray(b, v.AsStringSlice(), attribute.StringValue)
	case attribute.SLICE:
		return appendArray(b, v.AsSlice(), func(v attribute.Value) attribute.Value { return v })
	case attribute.MAP:
		b, at := openField(b, fAnyKvlist)
		for _, kv := range v.AsMap() {
			b = appendKeyValue(b, fKvlistValues, kv)
		}
		return closeField(b, at)
	case attribute.EMPTY:
		return b
	}
	return appendStringAlways(b, fAnyString, "INVALID")
}

func appendArray[T any](b []byte, vals []T, of func(T) attribute.Value) []byte {
	b, at := openField(b, fAnyArray)
	for _, v := range vals {
		var vat int
		b, vat = openField(b, fArrayValues)
		b = appendAnyValue(b, of(v))
		b = closeField(b, vat)
	}
	return closeField(b, at)
}

// openField appends the tag of the length-delimited field num and one byte
// for its length, and returns where that byte is, for closeField.
func openField(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0), len(b)
}

// closeField writes the length of the field opened at at (everything
// appended since), moving its contents when the length takes more than the
// byte openField kept.
func closeField(b []byte, at int) []byte {
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[at+k:], b[at+1:at+1+n])
	protowire.AppendVarint(b[:at], uint64(n))
	return b
}

// appendString appends a string field, unless it is empty (proto3).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

// appendStringAlways appends a string field, invalid UTF-8 replaced.
func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
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
