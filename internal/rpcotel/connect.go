package rpcotel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
)

// ConnectInterceptor returns the connect-go interceptor of in's side: pass
// it with connect.WithInterceptors to handlers (servers) or clients.
func (in *Instrumentation) ConnectInterceptor() connect.Interceptor { return connectInterceptor{in} }

type connectInterceptor struct{ in *Instrumentation }

func connectSystem(protocol string) system {
	if protocol == connect.ProtocolConnect {
		return sysConnect
	}
	return sysGRPC // gRPC and gRPC-Web
}

// codeOf is the code and message a connect-go call ended with.
func codeOf(err error) (uint32, string) {
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, context.Canceled):
		return uint32(connect.CodeCanceled), err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return uint32(connect.CodeDeadlineExceeded), err.Error()
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		if connect.IsNotModifiedError(err) {
			return 0, "" // a 304 for a cacheable GET is not an error
		}
		return uint32(ce.Code()), ce.Message()
	}
	return uint32(connect.CodeOf(err)), err.Error()
}

func (c connectInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	in := c.in
	return func(ctx context.Context, req connect.AnyRequest) (_ connect.AnyResponse, err error) {
		spec := req.Spec()
		if IsHealth(spec.Procedure) || spec.IsClient == in.server {
			return next(ctx, req)
		}
		m, s := in.method(spec.Procedure), connectSystem(req.Peer().Protocol)
		start := time.Now()
		if in.server {
			ctx, span := in.startServer(ctx, headerCarrier(req.Header()), m, s)
			defer in.endConnectServer(ctx, span, m, s, start, &err)
			return next(ctx, req)
		}
		ctx, span := in.startClient(ctx, m, s)
		in.prop.Inject(ctx, headerCarrier(req.Header()))
		res, err := next(ctx, req)
		code, msg := codeOf(err)
		in.end(ctx, span, m, s, code, msg, time.Since(start))
		return res, err
	}
}

// endConnectServer ends a served call's span with *err, or as INTERNAL
// when the handler panicked (the panic goes on, to connect-go's recovery
// interceptor, which the mesh puts outside this one).
func (in *Instrumentation) endConnectServer(ctx context.Context, span trace.Span, m *method, s system, start time.Time, err *error) {
	if p := recover(); p != nil {
		in.end(ctx, span, m, s, codeInternal, "panic", time.Since(start))
		panic(p)
	}
	code, msg := codeOf(*err)
	in.end(ctx, span, m, s, code, msg, time.Since(start))
}

func (c connectInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	in := c.in
	if !in.server {
		return next
	}
	return func(ctx context.Context, conn connect.StreamingHandlerConn) (err error) {
		spec := conn.Spec()
		if IsHealth(spec.Procedure) {
			return next(ctx, conn)
		}
		m, s := in.method(spec.Procedure), connectSystem(conn.Peer().Protocol)
		start := time.Now()
		ctx, span := in.startServer(ctx, headerCarrier(conn.RequestHeader()), m, s)
		defer in.endConnectServer(ctx, span, m, s, start, &err)
		return next(ctx, conn)
	}
}

func (c connectInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	in := c.in
	if in.server {
		return next
	}
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		if IsHealth(spec.Procedure) {
			return next(ctx, spec)
		}
		m := in.method(spec.Procedure)
		start := time.Now()
		// connect-go sends the request headers with the first message (or
		// CloseRequest), so what is injected after next still goes out;
		// the protocol is known only from the connection next returns.
		conn := next(ctx, spec)
		s := connectSystem(conn.Peer().Protocol)
		sctx, span := in.startClient(ctx, m, s)
		in.prop.Inject(sctx, headerCarrier(conn.RequestHeader()))
		cs := &clientStream{StreamingClientConn: conn, in: in, ctx: sctx, span: span, m: m, s: s, start: start}
		// A caller that cancels and walks away ends the span too.
		cs.stop = context.AfterFunc(ctx, func() { cs.finish(ctx.Err()) })
		return cs
	}
}

// clientStream ends its span when the stream ends: at the first error
// Receive returns (io.EOF is a clean end), at CloseResponse (with the
// first error Send or CloseRequest gave, if the response had none), or
// when the call's context ends.
type clientStream struct {
	connect.StreamingClientConn
	in    *Instrumentation
	ctx   context.Context
	span  trace.Span
	m     *method
	s     system
	start time.Time
	stop  func() bool // stops the context's AfterFunc

	mu      sync.Mutex
	sendErr error // the first error of Send or CloseRequest (io.EOF excepted)
	once    sync.Once
}

func (c *clientStream) finish(err error) {
	c.once.Do(func() {
		if c.stop != nil {
			c.stop()
		}
		code, msg := codeOf(err)
		c.in.end(c.ctx, c.span, c.m, c.s, code, msg, time.Since(c.start))
	})
}

// sent remembers the first error of the request side.
func (c *clientStream) sent(err error) error {
	if err != nil && !errors.Is(err, io.EOF) {
		c.mu.Lock()
		if c.sendErr == nil {
			c.sendErr = err
		}
		c.mu.Unlock()
	}
	return err
}

func (c *clientStream) Send(msg any) error { return c.sent(c.StreamingClientConn.Send(msg)) }

func (c *clientStream) CloseRequest() error { return c.sent(c.StreamingClientConn.CloseRequest()) }

func (c *clientStream) Receive(msg any) error {
	err := c.StreamingClientConn.Receive(msg)
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.finish(nil)
		} else {
			c.finish(err)
		}
	}
	return err
}

func (c *clientStream) CloseResponse() error {
	err := c.StreamingClientConn.CloseResponse()
	end := err
	if end == nil {
		c.mu.Lock()
		end = c.sendErr
		c.mu.Unlock()
	}
	c.finish(end)
	return err
}

// headerCarrier reads and writes HTTP headers as a propagation carrier,
// with the propagation headers' canonical forms spelled out:
// http.Header.Get would canonicalize (and allocate) each key per call.
type headerCarrier http.Header

func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

func (h headerCarrier) Get(key string) string {
	if v := h[canonical(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headerCarrier) Values(key string) []string { return h[canonical(key)] }

func (h headerCarrier) Set(key, value string) { h[canonical(key)] = []string{value} }

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
