package downstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/services/internal/downstream"
)

// The errors a misrouted or unreachable downstream gave callers before
// this package existed.
const (
	dialError      = `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:40417: connect: connection refused"`
	handshakeError = `connection error: desc = "transport: authentication handshake failed: server \"spiffe://shop.example/ns/shop/sa/payments\" not authorized: want \"spiffe://shop.example/ns/shop/sa/inventory\""`
)

func TestPublic(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		// The downstream's answers about the request are relayed.
		{"invalid argument", status.Error(codes.InvalidArgument, `items[1].product_id: duplicate product "sku-apple"`), codes.InvalidArgument, `items[1].product_id: duplicate product "sku-apple"`},
		{"not found", status.Error(codes.NotFound, `order "x" not found`), codes.NotFound, `order "x" not found`},
		{"already exists", status.Error(codes.AlreadyExists, "taken"), codes.AlreadyExists, "taken"},
		{"failed precondition", connect.NewError(connect.CodeFailedPrecondition, errors.New("payment declined")), codes.FailedPrecondition, "payment declined"},
		{"out of range", status.Error(codes.OutOfRange, "past the end"), codes.OutOfRange, "past the end"},
		{"long relayed message", status.Error(codes.NotFound, strings.Repeat("n", 300)), codes.NotFound, strings.Repeat("n", downstream.MaxRelayedBytes) + "…(300 bytes)"},
		// Everything else keeps a sensible code with a generic message.
		{"dial error", status.Error(codes.Unavailable, dialError), codes.Unavailable, "orders unavailable"},
		{"refused handshake", status.Error(codes.Unavailable, handshakeError), codes.Unavailable, "orders unavailable"},
		{"connect dial error", connect.NewError(connect.CodeUnavailable, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")), codes.Unavailable, "orders unavailable"},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), codes.DeadlineExceeded, "orders timed out"},
		{"canceled", status.Error(codes.Canceled, "context canceled"), codes.Canceled, "orders call canceled"},
		{"rate limited", status.Error(codes.ResourceExhausted, "spiffe://shop.example/ns/shop/sa/gateway: rate limit"), codes.ResourceExhausted, "orders overloaded"},
		{"aborted", status.Error(codes.Aborted, "conflict"), codes.Aborted, "orders aborted the call"},
		{"denied", status.Error(codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/gateway may not call /shop.orders.v1.OrderService/CreateOrder"), codes.PermissionDenied, "orders denied the call"},
		{"hop unauthenticated", status.Error(codes.Unauthenticated, "invalid transaction token"), codes.Internal, "orders failed"},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown method"), codes.Internal, "orders failed"},
		{"internal", status.Error(codes.Internal, "inventory returned no price"), codes.Internal, "orders failed"},
		{"unknown", status.Error(codes.Unknown, "panic"), codes.Internal, "orders failed"},
		{"data loss", status.Error(codes.DataLoss, "lost"), codes.Internal, "orders failed"},
		{"code out of range", status.Error(codes.Code(99), "new"), codes.Internal, "orders failed"},
		{"context canceled", context.Canceled, codes.Canceled, "orders call canceled"},
		{"wrapped context deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "orders timed out"},
		{"plain error", errors.New("boom"), codes.Internal, "orders failed"},
		{"nil", nil, codes.OK, ""},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, msg := downstream.Public("orders", tc.err)
			if code != tc.code || msg != tc.msg {
				t.Fatalf("Public(%v) = %v %q, want %v %q", tc.err, code, msg, tc.code, tc.msg)
			}
		})
	}
}

func TestLog(t *testing.T) {
	t.Parallel()
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled,
	}))
	testCases := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"unavailable", traced, status.Error(codes.Unavailable, dialError),
			`level=WARN msg="downstream call failed" call=orders.CreateOrder code=Unavailable error="rpc error: code = Unavailable desc = ` +
				strings.ReplaceAll(strings.ReplaceAll(dialError, `\`, `\\`), `"`, `\"`) + `" trace_id=4bf92f3577b34da6a3ce929d0e0e4736`},
		{"relayed answer", traced, status.Error(codes.FailedPrecondition, "short"),
			`level=DEBUG msg="downstream call failed" call=orders.CreateOrder code=FailedPrecondition error="rpc error: code = FailedPrecondition desc = short" trace_id=4bf92f3577b34da6a3ce929d0e0e4736`},
		{"canceled", traced, connect.NewError(connect.CodeCanceled, context.Canceled),
			`level=DEBUG msg="downstream call failed" call=orders.CreateOrder code=Canceled error="canceled: context canceled" trace_id=4bf92f3577b34da6a3ce929d0e0e4736`},
		{"no span", context.Background(), status.Error(codes.Internal, "x"),
			`level=WARN msg="downstream call failed" call=orders.CreateOrder code=Internal error="rpc error: code = Internal desc = x"`},
		{"long error", context.Background(), errors.New(strings.Repeat("e", 2000)),
			`level=WARN msg="downstream call failed" call=orders.CreateOrder code=Unknown error="` + strings.Repeat("e", downstream.MaxLoggedBytes) + `…(2000 bytes)"`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level:       slog.LevelDebug,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
			}))
			downstream.Log(tc.ctx, log, "orders.CreateOrder", tc.err)
			if got := strings.TrimSuffix(buf.String(), "\n"); got != tc.want {
				t.Fatalf("log =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
