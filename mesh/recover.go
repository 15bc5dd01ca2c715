package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"connectrpc.com/connect"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// internalMessage is what a client learns of a panic: nothing about it.
const internalMessage = "internal error"

// logPanic writes one log line about a recovered panic, with the caller and
// method when known and the stack, for the operator; the client gets only
// "internal error".
func logPanic(ctx context.Context, log *slog.Logger, method string, p any) {
	caller := "<none>"
	if pr, ok := identity.FromContext(ctx); ok {
		caller = pr.ID.String()
	} else if pr, ok := authn.FromGRPC(ctx); ok { // grpc-go: recovery runs before the identity interceptor
		caller = pr.ID.String()
	}
	log.Error("mesh: recovered a panic in a handler",
		slog.String("method", method), slog.String("caller", caller),
		slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
}

// grpcRecovery turns a panic in a grpc-go handler or interceptor into
// Internal "internal error" and a log line, instead of a crashed process.
func grpcRecovery(log *slog.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method := "<unknown>"
		if m, ok := grpc.Method(ctx); ok {
			method = m
		}
		logPanic(ctx, log, method, p)
		return status.Error(codes.Internal, internalMessage)
	})
}

// connectRecovery is the connect-go form of grpcRecovery.
func connectRecovery(log *slog.Logger) connect.HandlerOption {
	return connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
		logPanic(ctx, log, spec.Procedure, p)
		return connect.NewError(connect.CodeInternal, errors.New(internalMessage))
	})
}
