// Package rpcotel is the mesh's OpenTelemetry instrumentation of RPCs, on
// grpc-go (interceptors: [Instrumentation.UnaryServerInterceptor] with its
// [Instrumentation.TapHandle] for servers, [Instrumentation.UnaryClientInterceptor]
// for clients, and their stream forms) and connect-go (an interceptor,
// [Instrumentation.ConnectInterceptor]), for servers and
// clients: one span per call and the rpc.server.call.duration (or
// rpc.client.call.duration) histogram, in the stable RPC semantic
// conventions (semconv v1.43) that otelgrpc and otelconnect follow too:
// span name "package.Service/Method", attributes rpc.system.name,
// rpc.method and rpc.response.status_code (the gRPC canonical name, e.g.
// PERMISSION_DENIED), error.type on errors, and the span status of the
// conventions (a server's span is an error for UNKNOWN, DEADLINE_EXCEEDED,
// UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS only; a client's for
// every code but OK).
//
// It replaces otelgrpc and otelconnect in the mesh because they cost
// 20–40 µs of server CPU per call for work the mesh does not need: they
// copy the whole incoming metadata to read one header, build the span's
// attributes and the metric's attribute set anew on every call, and format
// and parse the local and peer addresses. Here what depends only on the
// method (name, attributes, span start options, one metric attribute set
// per status code) is built once per method and shared; a call reads the
// propagation headers it needs (for the W3C propagators; a propagator that
// lists the carrier's keys gets them). Health checks are not instrumented
// at all. What differs from otelgrpc and otelconnect:
//   - no message events, no server.address / server.port on client spans
//     and no network.peer.* on server spans (the mesh records the peer's
//     verified SPIFFE ID), no request and response size metrics, and no
//     http.response.status_code on a connect-go GET answered 304;
//   - only the stable conventions: OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup or
//     rpc/old (the old rpc.server.duration in milliseconds) is not honoured;
//   - the instrumentation scope is this package ([Scope]), with no version
//     or schema URL, so otel_scope_name labels differ;
//   - a server whose context already holds a local span (another
//     instrumentation's) starts its span from the caller's trace context as
//     usual, linked, not as that span's child, unless TrustRemote;
//   - a code past UNAUTHENTICATED counts as UNKNOWN (an error);
//   - on grpc-go, servers are instrumented by interceptors (cheaper than a
//     stats handler): a call of a method the server does not serve, which
//     reaches no interceptor, makes no span, and a span starts once the
//     request is read.
package rpcotel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of the spans and metrics.
const Scope = "github.com/trustmesh/trustmesh/internal/rpcotel"

// Config says where the data goes. Every field is required.
type Config struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// TrustRemote makes a server continue the caller's trace; otherwise
	// it starts a new trace linked to the caller's (the caller's baggage
	// is read either way). Ignored by clients.
	TrustRemote bool
}

// Instrumentation instruments one side (server or client) of one stack.
type Instrumentation struct {
	tracer      trace.Tracer
	prop        propagation.TextMapPropagator
	server      bool
	trustRemote bool
	kind        trace.SpanKind
	duration    metric.Float64Histogram
	methods     methodCache
}

// New returns the instrumentation of servers (server true) or clients.
func New(c Config, server bool) (*Instrumentation, error) {
	if c.TracerProvider == nil || c.MeterProvider == nil || c.Propagator == nil {
		return nil, errors.New("rpcotel: nil tracer provider, meter provider or propagator")
	}
	in := &Instrumentation{
		tracer:      c.TracerProvider.Tracer(Scope),
		prop:        c.Propagator,
		server:      server,
		trustRemote: c.TrustRemote,
		kind:        trace.SpanKindClient,
	}
	name, unit, desc := rpcconv.ClientCallDuration{}.Name(), rpcconv.ClientCallDuration{}.Unit(), rpcconv.ClientCallDuration{}.Description()
	if server {
		in.kind = trace.SpanKindServer
		name, unit, desc = rpcconv.ServerCallDuration{}.Name(), rpcconv.ServerCallDuration{}.Unit(), rpcconv.ServerCallDuration{}.Description()
	}
	var err error
	in.duration, err = c.MeterProvider.Meter(Scope).Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		return nil, fmt.Errorf("rpcotel: %s histogram: %w", name, err)
	}
	return in, nil
}

// system is an RPC system of the conventions (rpc.system.name): gRPC (and
// gRPC-Web, which the conventions count as gRPC, as otelconnect does) or
// the Connect protocol.
type system uint8

const (
	sysGRPC system = iota
	sysConnect
	numSystems
)

var systemAttrs = [numSystems]attribute.KeyValue{
	sysGRPC:    semconv.RPCSystemNameGRPC,
	sysConnect: semconv.RPCSystemNameConnectrpc,
}

// numCodes is the number of gRPC (and Connect) codes, OK to UNAUTHENTICATED;
// a code outside them is counted as UNKNOWN.
const numCodes = 17

const (
	codeUnknown  = 2
	codeInternal = 13
)

// codeNames are the gRPC canonical names of the codes.
var codeNames = [numCodes]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// statusAttrs and errorTypeAttrs are rpc.response.status_code and
// error.type per code, built once.
var statusAttrs, errorTypeAttrs = func() (s, e [numCodes]attribute.KeyValue) {
	for c, name := range codeNames {
		s[c] = semconv.RPCResponseStatusCodeKey.String(name)
		e[c] = semconv.ErrorTypeKey.String(name)
	}
	return s, e
}()

// isError reports whether code makes the span (and the metric's error.type)
// an error on this side, as the conventions say.
func (in *Instrumentation) isError(code uint32) bool {
	if code == 0 {
		return false
	}
	if !in.server {
		return true
	}
	switch code {
	case 2, 4, 12, 13, 14, 15: // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
		return true
	}
	return false
}

// method is what is built once per method: its span name, span start
// options per system and the metric's record options per system and code.
type method struct {
	name  string
	start [numSystems][]trace.SpanStartOption
	attrs [numSystems][]attribute.KeyValue
	rec   [numSystems][numCodes]atomic.Pointer[metric.RecordOption]
}

func (in *Instrumentation) newMethod(full string) *method {
	m := &method{name: strings.TrimPrefix(full, "/")}
	for s := range numSystems {
		m.attrs[s] = []attribute.KeyValue{systemAttrs[s], semconv.RPCMethodKey.String(m.name)}
		m.start[s] = []trace.SpanStartOption{trace.WithSpanKind(in.kind), trace.WithAttributes(m.attrs[s]...)}
	}
	return m
}

// recordOption is the metric attribute set of a call of m on s ending in
// code, built on first use.
func (in *Instrumentation) recordOption(m *method, s system, code uint32) metric.RecordOption {
	slot := &m.rec[s][code]
	if p := slot.Load(); p != nil {
		return *p
	}
	kv := append(append(make([]attribute.KeyValue, 0, 4), m.attrs[s]...), statusAttrs[code])
	if in.isError(code) {
		kv = append(kv, errorTypeAttrs[code])
	}
	var opt metric.RecordOption = metric.WithAttributeSet(attribute.NewSet(kv...))
	slot.Store(&opt)
	return opt
}

// maxMethods bounds the method cache: a server's are the methods it serves
// (calls of others reach neither grpc-go's interceptors nor connect-go's
// handlers), a client's are the ones its program calls.
const maxMethods = 4096

// methodCache maps full method names to their *method: copied on write,
// so that a call reads it with one atomic load.
type methodCache struct {
	m  atomic.Pointer[map[string]*method]
	mu sync.Mutex
}

func (in *Instrumentation) method(full string) *method {
	if p := in.methods.m.Load(); p != nil {
		if m, ok := (*p)[full]; ok {
			return m
		}
	}
	in.methods.mu.Lock()
	defer in.methods.mu.Unlock()
	var old map[string]*method
	if p := in.methods.m.Load(); p != nil {
		old = *p
	}
	if m, ok := old[full]; ok {
		return m
	}
	m := in.newMethod(full)
	if len(old) >= maxMethods {
		return m // not cached: built per call
	}
	next := maps.Clone(old)
	if next == nil {
		next = map[string]*method{}
	}
	next[full] = m
	in.methods.m.Store(&next)
	return m
}

// startServer starts the server span of a call of m, continuing (or, unless
// trustRemote, linking to) the trace context in carrier; the caller's
// baggage goes into the context either way.
func (in *Instrumentation) startServer(ctx context.Context, carrier propagation.TextMapCarrier, m *method, s system) (context.Context, trace.Span) {
	ctx = in.prop.Extract(ctx, carrier)
	opts := m.start[s]
	if !in.trustRemote {
		opts = append(opts[:len(opts):len(opts)], trace.WithNewRoot())
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	ctx, span := in.tracer.Start(ctx, m.name, opts...)
	if span.IsRecording() {
		p := pendings.Get().(*Pending)
		p.sc = span.SpanContext()
		ctx = context.WithValue(ctx, pendingKey{}, p)
	}
	return ctx, span
}

// pendings are reused from call to call: end is done with one once the
// span has copied its attributes.
var pendings = sync.Pool{New: func() any { p := new(Pending); p.KV = p.buf[:0]; return p }}

// Pending is what a recording server span of this package gets when it
// ends, in the SetAttributes call that sets its status: the attributes the
// mesh's interceptors add while serving (the decision, the caller chain).
// Each SetAttributes call on an SDK span may grow (copy) its attribute
// slice; one call at the end grows it once. Only the mesh's server
// interceptors use it, from the goroutine serving the call, before the
// handler runs: once the span ends, the Pending serves another call, so
// nothing may look it up after that (client spans made under the served
// call's context never do).
type Pending struct {
	KV  []attribute.KeyValue
	buf [8]attribute.KeyValue
	sc  trace.SpanContext // of the span it is for (spans need not be comparable)
}

type pendingKey struct{}

// PendingFor returns the pending attributes of span, the span of ctx, when
// it is a recording server span of this package, and nil otherwise (the
// caller sets its attributes on the span itself). Call it only while
// serving the call, before its handler returns.
func PendingFor(ctx context.Context, span trace.Span) *Pending {
	if p, ok := ctx.Value(pendingKey{}).(*Pending); ok && sameSpan(p.sc, span.SpanContext()) {
		return p
	}
	return nil
}

func sameSpan(a, b trace.SpanContext) bool {
	return a.SpanID() == b.SpanID() && a.TraceID() == b.TraceID()
}

// startClient starts the client span of a call of m; the caller injects
// the context it returns.
func (in *Instrumentation) startClient(ctx context.Context, m *method, s system) (context.Context, trace.Span) {
	return in.tracer.Start(ctx, m.name, m.start[s]...)
}

// end ends span with code (and msg, when the code is an error on this
// side) and records the call's duration, if anyone reads it.
func (in *Instrumentation) end(ctx context.Context, span trace.Span, m *method, s system, code uint32, msg string, elapsed time.Duration) {
	if code >= numCodes {
		code = codeUnknown
	}
	if span.IsRecording() {
		var kv []attribute.KeyValue
		var p *Pending
		if in.server { // a client span's ctx may hold the served call's Pending
			if p = PendingFor(ctx, span); p != nil {
				kv = p.KV
			}
		}
		kv = append(kv, statusAttrs[code])
		if in.isError(code) {
			span.SetStatus(codes.Error, msg)
			kv = append(kv, errorTypeAttrs[code])
		}
		span.SetAttributes(kv...)
		span.End()
		if p != nil {
			clear(p.buf[:])
			p.KV, p.sc = p.buf[:0], trace.SpanContext{}
			pendings.Put(p)
		}
	}
	if in.duration.Enabled(ctx) {
		in.duration.Record(ctx, elapsed.Seconds(), in.recordOption(m, s, code))
	}
}

// healthPrefix is the prefix of the health checks' methods, which are not
// instrumented.
const healthPrefix = "/grpc.health.v1.Health/"

// IsHealth reports whether full ("/pkg.Service/Method") is a method of the
// gRPC health service, which is not instrumented.
func IsHealth(full string) bool { return strings.HasPrefix(full, healthPrefix) }
