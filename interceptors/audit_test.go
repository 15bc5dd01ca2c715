package interceptors_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/policy"
)

// TestAuditSampling: denials are always audited; allows as WithAuditAllows
// says (0: none, 1: all, n: one in n).
func TestAuditSampling(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-calls-orders", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/shop/sa/gateway"}, To: []string{"/shop.orders.v1.OrderService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		every       uint64
		wantAllowed int // audit lines for 6 allowed calls
	}{{0, 0}, {1, 6}, {3, 2}}
	for _, tc := range testCases {
		var logs bytes.Buffer
		a, err := interceptors.NewAuthorizer(e, interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(&logs, nil))),
			interceptors.WithAuditAllows(tc.every))
		if err != nil {
			t.Fatal(err)
		}
		tapFn := a.TapHandle()
		info := &tap.Info{FullMethodName: "/shop.orders.v1.OrderService/CreateOrder"}
		for range 6 {
			if _, err := tapFn(callerContext("spiffe://shop.example/ns/shop/sa/gateway"), info); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := tapFn(callerContext("spiffe://shop.example/user/alice"), info); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("alice: %v, want PermissionDenied", err)
			}
		}
		allowed := strings.Count(logs.String(), "decision=allow")
		denied := strings.Count(logs.String(), "level=WARN msg=\"authz decision\" caller=spiffe://shop.example/user/alice")
		if allowed != tc.wantAllowed || denied != 2 {
			t.Errorf("WithAuditAllows(%d): %d allow and %d deny events, want %d and 2:\n%s", tc.every, allowed, denied, tc.wantAllowed, logs.String())
		}
	}
}

// TestStreamServerInterceptor: the stream adapter refuses and lets through
// like the others.
func TestStreamServerInterceptor(t *testing.T) {
	t.Parallel()
	stream := newAuthorizer(t).StreamServerInterceptor()
	info := &grpc.StreamServerInfo{FullMethod: "/shop.orders.v1.OrderService/WatchOrder", IsServerStream: true}
	ran := false
	handler := func(any, grpc.ServerStream) error { ran = true; return nil }
	if err := stream(nil, fakeStream{ctx: callerContext("spiffe://shop.example/ns/shop/sa/gateway")}, info, handler); err != nil || !ran {
		t.Fatalf("gateway: err %v, handler ran %v", err, ran)
	}
	ran = false
	err := stream(nil, fakeStream{ctx: callerContext("spiffe://shop.example/user/alice")}, info, handler)
	if status.Code(err) != codes.PermissionDenied || ran {
		t.Fatalf("alice: err %v, handler ran %v; want PermissionDenied before the handler", err, ran)
	}
	ran = false
	err = stream(nil, fakeStream{ctx: context.Background()}, info, handler)
	if status.Code(err) != codes.Unauthenticated || ran {
		t.Fatalf("no peer: err %v, handler ran %v; want Unauthenticated", err, ran)
	}
}

// fakeStream is a grpc.ServerStream that only has a context: the adapter
// reads nothing else before deciding.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
