package gateway

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFromGRPC(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		err  error
		code connect.Code
		msg  string
	}{
		{"not found", status.Error(codes.NotFound, `order "x" not found`), connect.CodeNotFound, `order "x" not found`},
		{"failed precondition", status.Error(codes.FailedPrecondition, "payment declined"), connect.CodeFailedPrecondition, "payment declined"},
		{"permission denied", status.Error(codes.PermissionDenied, "denied"), connect.CodePermissionDenied, "denied"},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no cert"), connect.CodeUnauthenticated, "no cert"},
		{"deadline", status.Error(codes.DeadlineExceeded, "too slow"), connect.CodeDeadlineExceeded, "too slow"},
		// status.FromError keeps the wrapping text in the message.
		{"wrapped status", fmt.Errorf("call: %w", status.Error(codes.Unavailable, "down")), connect.CodeUnavailable, "call: rpc error: code = Unavailable desc = down"},
		{"context canceled", context.Canceled, connect.CodeCanceled, "context canceled"},
		{"context deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "wait: context deadline exceeded"},
		{"plain error", errors.New("boom"), connect.CodeUnknown, "boom"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := fromGRPC(tc.err)
			var ce *connect.Error
			if !errors.As(got, &ce) || ce.Code() != tc.code || ce.Message() != tc.msg {
				t.Fatalf("fromGRPC(%v) = %v, want %v %q", tc.err, got, tc.code, tc.msg)
			}
		})
	}
	if err := fromGRPC(nil); err != nil {
		t.Fatalf("fromGRPC(nil) = %v, want nil", err)
	}
	// Every code keeps its number across the two stacks.
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		if got := connect.CodeOf(fromGRPC(status.Error(c, "x"))); got.String() != connectName(c) {
			t.Errorf("code %v became %v", c, got)
		}
	}
}

// connectName is the connect spelling of a gRPC code: "FailedPrecondition"
// becomes "failed_precondition".
func connectName(c codes.Code) string {
	var b []byte
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b = append(b, '_')
			}
			r += 'a' - 'A'
		}
		b = append(b, byte(r))
	}
	return string(b)
}
