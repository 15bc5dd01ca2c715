package rpcotel

import (
	"context"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// GRPCHandler returns the grpc-go stats handler of in's side: pass it to
// grpc.StatsHandler (servers) or grpc.WithStatsHandler (clients).
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
func (p *pairs) Set(key, value string) {
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
