package rpcotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// GRPCHandler returns the grpc-go stats handler of in's side: pass it to
// grpc.WithStatsHandler (clients). Servers use the interceptors
// ([Instrumentation.UnaryServerInterceptor]), which cost less.
func (in *Instrumentation) GRPCHandler() stats.Handler { return grpcHandler{in} }

type grpcHandler struct{ in *Instrumentation }

// serverCallKey and clientCallKey hold the *method of an instrumented
// call in its context, one key per side: a call a handler makes runs in a
// context derived from the served call's, and must never take the served
// call's method (or end its span) for its own.
type (
	serverCallKey struct{}
	clientCallKey struct{}
)

func (h grpcHandler) callKey() any {
	if h.in.server {
		return serverCallKey{}
	}
	return clientCallKey{}
}

func (h grpcHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if isHealth(info.FullMethodName) {
		return ctx
	}
	m := h.in.method(info.FullMethodName)
	if h.in.server {
		ctx, _ = h.in.startServer(ctx, incoming{ctx}, m, sysGRPC)
	} else {
		ctx, _ = h.in.startClient(ctx, m, sysGRPC)
		ctx = inject(ctx, h.in)
	}
	return context.WithValue(ctx, h.callKey(), m)
}

func (h grpcHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	end, ok := rs.(*stats.End)
	if !ok {
		return
	}
	m, ok := ctx.Value(h.callKey()).(*method)
	if !ok {
		return // not instrumented: a health check
	}
	var code uint32
	var msg string
	if end.Error != nil {
		st, _ := status.FromError(end.Error)
		code, msg = uint32(st.Code()), st.Message()
	}
	h.in.end(ctx, spanOf(ctx), m, sysGRPC, code, msg, end.EndTime.Sub(end.BeginTime))
}

func (grpcHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (grpcHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// incoming reads a served call's metadata as a propagation carrier, one
// key at a time: metadata.FromIncomingContext would copy all of it.
type incoming struct{ ctx context.Context }

func (c incoming) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c incoming) Values(key string) []string { return metadata.ValueFromIncomingContext(c.ctx, key) }

func (c incoming) Set(string, string) {} // incoming metadata is read-only

func (c incoming) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// pairs collects what a propagator injects, as metadata key-value pairs.
type pairs struct{ kv []string }

func (p *pairs) Get(string) string { return "" }
func (p *pairs) Set(key, value string) { // as a carrier's Set: the last value wins
	for i := 0; i < len(p.kv); i += 2 {
		if p.kv[i] == key {
			p.kv[i+1] = value
			return
		}
	}
	p.kv = append(p.kv, key, value)
}
func (p *pairs) Keys() []string { return nil }

// inject adds the trace context and baggage of ctx to its outgoing
// metadata. When the metadata holds none of the propagator's keys yet (the
// usual case), they are appended without copying it; otherwise they replace
// what is there, as a carrier's Set does.
func inject(ctx context.Context, in *Instrumentation) context.Context {
	var buf [6]string
	p := &pairs{kv: buf[:0]}
	in.prop.Inject(ctx, p)
	if len(p.kv) == 0 {
		return ctx
	}
	for i := 0; i < len(p.kv); i += 2 {
		if metadata.ValueFromOutgoingContext(ctx, p.kv[i]) != nil {
			md, _ := metadata.FromOutgoingContext(ctx) // a copy
			for j := 0; j < len(p.kv); j += 2 {
				md.Set(p.kv[j], p.kv[j+1])
			}
			return metadata.NewOutgoingContext(ctx, md)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, p.kv...)
}

// UnaryServerInterceptor is the server side on grpc-go, as an interceptor
// rather than a stats handler: with a stats handler installed, grpc-go
// copies every call's incoming metadata and allocates an event for each
// header, message and trailer of every call, for a handler that needs the
// call's start and end. A call of a method the server does not serve never
// reaches an interceptor, so a caller cannot choose span names or metric
// series. The span starts once the request is read, and ends with the
// status the handler returned (a panic ends it as INTERNAL, and goes on).
// Put it after the interceptors that must run first (recovery, identity)
// and before those that annotate the span.
func (in *Instrumentation) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
		if isHealth(info.FullMethod) {
			return handler(ctx, req)
		}
		m := in.method(info.FullMethod)
		start := time.Now()
		ctx, span := in.startServer(ctx, incoming{ctx}, m, sysGRPC)
		defer in.endServer(ctx, span, m, start, &err)
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is the streaming form of
// [Instrumentation.UnaryServerInterceptor].
func (in *Instrumentation) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		if isHealth(info.FullMethod) {
			return handler(srv, ss)
		}
		m := in.method(info.FullMethod)
		start := time.Now()
		ctx, span := in.startServer(ss.Context(), incoming{ss.Context()}, m, sysGRPC)
		defer in.endServer(ctx, span, m, start, &err)
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

// endServer ends a served call's span with *err, or as INTERNAL when the
// handler panicked (the panic goes on, to the recovery interceptor).
func (in *Instrumentation) endServer(ctx context.Context, span trace.Span, m *method, start time.Time, err *error) {
	if p := recover(); p != nil {
		in.end(ctx, span, m, sysGRPC, uint32(codes.Internal), "panic", time.Since(start))
		panic(p)
	}
	var code uint32
	var msg string
	if *err != nil {
		st, _ := status.FromError(*err)
		code, msg = uint32(st.Code()), st.Message()
	}
	in.end(ctx, span, m, sysGRPC, code, msg, time.Since(start))
}

// serverStream is a grpc.ServerStream with the span's context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
