package interceptors_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testsync"
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
		for _, who := range []string{"alice", "bob"} { // two different refusals: identical ones are summarised
			if _, err := tapFn(callerContext("spiffe://shop.example/user/"+who), info); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("%s: %v, want PermissionDenied", who, err)
			}
		}
		allowed := strings.Count(logs.String(), "decision=allow")
		denied := strings.Count(logs.String(), "level=WARN msg=\"authz decision\" caller=spiffe://shop.example/user/")
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

// TestFloodOfRefusalsIsSummarised: a thousand identical refusals make one
// full audit line and, once the window closes, one summary line with the
// count; a different refusal in the same window is still written in full.
func TestFloodOfRefusalsIsSummarised(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-calls-orders", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/shop/sa/gateway"}, To: []string{"/shop.orders.v1.OrderService/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsync.Buffer{}
	a, err := interceptors.NewAuthorizer(e, interceptors.WithAuditLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	interceptors.SetRepeatWindow(a, 200*time.Millisecond)
	tapFn := a.TapHandle()
	mallory := callerContext("spiffe://shop.example/user/mallory")
	for range 1000 {
		if _, err := tapFn(mallory, &tap.Info{FullMethodName: "/shop.orders.v1.OrderService/CreateOrder"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("mallory: %v, want PermissionDenied", err)
		}
	}
	if _, err := tapFn(mallory, &tap.Info{FullMethodName: "/shop.orders.v1.OrderService/GetOrder"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("mallory GetOrder: %v, want PermissionDenied", err)
	}
	const summary = `level=WARN msg="authz decision repeated" caller=spiffe://shop.example/user/mallory method=/shop.orders.v1.OrderService/CreateOrder decision=deny rule=default-deny repeats=999 summary="999 more like this in the last 200ms"`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), summary) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := logs.String()
	if !strings.Contains(got, summary) {
		t.Fatalf("no summary line %q in:\n%s", summary, got)
	}
	if n := strings.Count(got, `msg="authz decision" caller=spiffe://shop.example/user/mallory method=/shop.orders.v1.OrderService/CreateOrder`); n != 1 {
		t.Errorf("%d full lines for the flood, want 1:\n%s", n, got)
	}
	if n := strings.Count(got, `msg="authz decision" caller=spiffe://shop.example/user/mallory method=/shop.orders.v1.OrderService/GetOrder`); n != 1 {
		t.Errorf("%d full lines for the other refusal, want 1", n)
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("%d log lines, want 3 (two refusals in full and one summary):\n%s", n, got)
	}
}
