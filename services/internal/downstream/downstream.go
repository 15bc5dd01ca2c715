package downstream

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/internal/clip"
	"github.com/trustmesh/trustmesh/txn"
)

// MaxRelayedBytes bounds a downstream message that [Public] relays; a
// longer one is cut (see clip.Counted).
const MaxRelayedBytes = 256

// MaxLoggedBytes bounds the error text that [Log] writes; a longer one is
// cut (see clip.Counted).
const MaxLoggedBytes = 1024

// Public returns the code and message that a service returns to its caller
// when its call to the downstream service named service failed with err (a
// gRPC status error from a grpc-go client, a *connect.Error from a
// connect-go client, or a context error): the downstream's own code and
// message for an answer about the request, otherwise a generic message, as
// the package documentation lists. A nil err is OK with no message.
func Public(service string, err error) (codes.Code, string) {
	if err == nil {
		return codes.OK, ""
	}
	code, msg := codeAndMessage(err)
	if Relayed(code) {
		return code, clip.Counted(msg, MaxRelayedBytes)
	}
	switch code {
	case codes.Unavailable:
		return code, service + " unavailable"
	case codes.DeadlineExceeded:
		return code, service + " timed out"
	case codes.Canceled:
		return code, service + " call canceled"
	case codes.ResourceExhausted:
		return code, service + " overloaded"
	case codes.Aborted:
		return code, service + " aborted the call"
	case codes.PermissionDenied:
		return code, service + " denied the call"
	}
	return codes.Internal, service + " failed"
}

// Relayed reports whether [Public] passes a downstream's message on for
// code: whether code is one of a downstream's answers about the request.
func Relayed(code codes.Code) bool {
	switch code {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}

// Log records that call (such as "orders.CreateOrder") failed with err:
// one "downstream call failed" line with the call, the code, the whole
// error ([ErrorAttr]) and the trace ID of ctx's span ([TraceID]). It logs
// at Warn, or at Debug for the downstream answers that [Public] relays and
// for a cancelled call, which are routine.
func Log(ctx context.Context, log *slog.Logger, call string, err error) {
	code, _ := codeAndMessage(err)
	level := slog.LevelWarn
	if Relayed(code) || code == codes.Canceled {
		level = slog.LevelDebug
	}
	log.LogAttrs(ctx, level, "downstream call failed", slog.String("call", call),
		slog.String("code", code.String()), ErrorAttr(err), TraceID(ctx))
}

// ErrorAttr returns the log attribute error with err's text, cut to
// [MaxLoggedBytes].
func ErrorAttr(err error) slog.Attr {
	return slog.String("error", clip.Counted(err.Error(), MaxLoggedBytes))
}

// TraceID returns the log attribute trace_id with the trace ID of ctx's
// span, or an empty attribute (which handlers omit) if ctx has none.
func TraceID(ctx context.Context) slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return slog.Attr{}
	}
	return slog.String("trace_id", sc.TraceID().String())
}

// Subject returns the log attribute subject with who the call is for: the
// subject of the verified transaction token in ctx (see txn.FromContext),
// or an empty attribute (which handlers omit) if ctx has none. The token
// itself is never logged.
func Subject(ctx context.Context) slog.Attr {
	tok, ok := txn.FromContext(ctx)
	if !ok {
		return slog.Attr{}
	}
	return slog.String("subject", tok.Subject().String())
}

// codeAndMessage returns err's code and message without the code prefix
// that the error's text carries.
func codeAndMessage(err error) (codes.Code, string) {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return codes.Code(ce.Code()), ce.Message() // the two code sets number their codes identically
	}
	if st, ok := status.FromError(err); ok {
		return st.Code(), st.Message()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, err.Error()
	}
	return codes.Unknown, err.Error()
}
