package rpcotel

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// TapHandle returns the grpc-go tap handle that hands a call's metadata,
// as the transport received it, to [Instrumentation.UnaryServerInterceptor]
// and its stream form: they read the trace context from it with a map
// look-up per header instead of a copy (metadata.ValueFromIncomingContext
// copies what it returns, and compares every key of the metadata with
// strings.EqualFold to find one that is absent, such as tracestate on most
// calls). Without it, the interceptors read a copy of the incoming
// metadata of the call's context.
func (in *Instrumentation) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if IsHealth(info.FullMethodName) {
			return ctx, nil
		}
		return context.WithValue(ctx, tapKey{}, info.Header), nil
	}
}

type tapKey struct{}

// grpcCarrier is the propagation carrier of a served grpc-go call: the
// metadata the tap handle kept, else (a server without it) a copy of the
// incoming metadata of ctx.
func grpcCarrier(ctx context.Context) propagation.TextMapCarrier {
	md, ok := ctx.Value(tapKey{}).(metadata.MD)
	if !ok {
		md, _ = metadata.FromIncomingContext(ctx)
	}
	return MDCarrier(md)
}

// MDCarrier reads the metadata of a served call, as the transport received
// it (tap.Info.Header) or from its context, as a propagation carrier: read
// only (Set does nothing), Values returns the metadata's own slice, and keys
// are matched in any case, as metadata.MD.Get does (a propagator may ask for
// "X-Amzn-Trace-Id"); the metadata's own keys are lower case.
type MDCarrier metadata.MD

// Get returns the first value of key.
func (c MDCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key (the metadata's own slice: do not
// modify it).
func (c MDCarrier) Values(key string) []string { return metadata.MD(c).Get(key) }

// Set does nothing: incoming metadata is read-only.
func (c MDCarrier) Set(string, string) {}

// Keys returns the metadata's keys.
func (c MDCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
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
		if IsHealth(info.FullMethod) {
			return handler(ctx, req)
		}
		m := in.method(info.FullMethod)
		start := time.Now()
		ctx, span := in.startServer(ctx, grpcCarrier(ctx), m, sysGRPC)
		defer in.endServer(ctx, span, m, start, &err)
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is the streaming form of
// [Instrumentation.UnaryServerInterceptor].
func (in *Instrumentation) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		if IsHealth(info.FullMethod) {
			return handler(srv, ss)
		}
		m := in.method(info.FullMethod)
		start := time.Now()
		ctx, span := in.startServer(ss.Context(), grpcCarrier(ss.Context()), m, sysGRPC)
		defer in.endServer(ctx, span, m, start, &err)
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

// endServer ends a served call's span with *err, or as INTERNAL when the
// handler panicked (the panic goes on, to the recovery interceptor).
func (in *Instrumentation) endServer(ctx context.Context, span trace.Span, m *method, start time.Time, err *error) {
	if p := recover(); p != nil {
		in.end(ctx, span, m, sysGRPC, codeInternal, "panic", time.Since(start))
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

// UnaryClientInterceptor is the client side on grpc-go: a client span per
// call (health checks excepted) and the trace context and baggage of ctx
// in the call's metadata. Interceptors rather than a stats handler, for
// the same reason as on servers; the span starts before the call is sent.
// Put it after the interceptors that change the baggage (the caller chain).
func (in *Instrumentation) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if IsHealth(method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		m := in.method(method)
		start := time.Now()
		ctx, span := in.startClient(ctx, m, sysGRPC)
		err := invoker(inject(ctx, in), method, req, reply, cc, opts...)
		code, msg := grpcCode(err)
		in.end(ctx, span, m, sysGRPC, code, msg, time.Since(start))
		return err
	}
}

// StreamClientInterceptor is the streaming form of
// [Instrumentation.UnaryClientInterceptor]. The span ends when the stream
// does: RecvMsg's io.EOF or error (for a stream with one response, once
// it is received), or when the call's context ends.
func (in *Instrumentation) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if IsHealth(method) {
			return streamer(ctx, desc, cc, method, opts...)
		}
		m := in.method(method)
		start := time.Now()
		ctx, span := in.startClient(ctx, m, sysGRPC)
		cs, err := streamer(inject(ctx, in), desc, cc, method, opts...)
		if err != nil {
			code, msg := grpcCode(err)
			in.end(ctx, span, m, sysGRPC, code, msg, time.Since(start))
			return nil, err
		}
		s := &clientGRPCStream{ClientStream: cs, in: in, ctx: ctx, span: span, m: m, start: start, oneResponse: !desc.ServerStreams}
		s.stop = context.AfterFunc(ctx, func() { s.finish(ctx.Err()) })
		return s, nil
	}
}

// grpcCode is the code and message of a grpc-go call's error (a context's
// error as grpc-go reports it: CANCELLED, DEADLINE_EXCEEDED).
func grpcCode(err error) (uint32, string) {
	if err == nil {
		return 0, ""
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return uint32(st.Code()), st.Message()
}

// clientGRPCStream ends its span once, when the stream ends.
type clientGRPCStream struct {
	grpc.ClientStream
	in          *Instrumentation
	ctx         context.Context
	span        trace.Span
	m           *method
	start       time.Time
	oneResponse bool
	stop        func() bool
	once        sync.Once
}

func (s *clientGRPCStream) finish(err error) {
	s.once.Do(func() {
		s.stop()
		code, msg := grpcCode(err)
		s.in.end(s.ctx, s.span, s.m, sysGRPC, code, msg, time.Since(s.start))
	})
}

func (s *clientGRPCStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	switch {
	case errors.Is(err, io.EOF):
		s.finish(nil)
	case err != nil:
		s.finish(err)
	case s.oneResponse: // grpc-go has read the status with the one response
		s.finish(nil)
	}
	return err
}
