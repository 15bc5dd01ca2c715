package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"connectrpc.com/connect"

	"github.com/trustmesh/trustmesh/services/internal/downstream"
)

// downstreamError logs the failed downstream call (such as
// "orders.CreateOrder") in full with the trace ID of ctx, and returns the
// connect error the gateway's caller gets instead: the downstream's own code
// and message for its answers about the request (a short stock stays
// FailedPrecondition "insufficient stock for product ..."), a generic
// message that keeps a sensible code otherwise (orders down is Unavailable
// "orders unavailable"). See services/internal/downstream for the table.
func downstreamError(ctx context.Context, log *slog.Logger, call string, err error) error {
	downstream.Log(ctx, log, call, err)
	service, _, _ := strings.Cut(call, ".")
	code, msg := downstream.Public(service, err)
	return connect.NewError(connect.Code(code), errors.New(msg)) // the two code sets number their codes identically
}

func invalid(msg string) error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
}
