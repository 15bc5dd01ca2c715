package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"regexp"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestTracesUsageErrors(t *testing.T) {
	testCases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"extra-argument", nil, []string{"now"}, `traces: unexpected argument "now"`},
		{"bad-listen", nil, []string{"--listen", "4317"}, `--listen "4317": want host:port`},
		{"bad-env-listen", map[string]string{"SHOP_TRACES_LISTEN": "nowhere"}, nil, `--listen "nowhere": want host:port`},
		{"unknown-flag", nil, []string{"--port", "1"}, "traces: flag provided but not defined: -port"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			err := tracesCmd(context.Background(), tc.args, &stdout, &stderr)
			if !errors.Is(err, errUsage) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("tracesCmd error = %v, want a usage error starting %q", err, tc.want)
			}
		})
	}
}

func TestTracesPrintsReceivedTrace(t *testing.T) {
	var stdout, stderr testsync.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tracesCmd(ctx, []string{"--listen", "127.0.0.1:0"}, &stdout, &stderr) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tracesCmd: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("tracesCmd did not return 10s after its context was cancelled")
		}
	}()

	addrRE := regexp.MustCompile(`on (127\.0\.0\.1:\d+);`)
	testsync.WaitFor(t, "the listening line", func() bool { return addrRE.MatchString(stderr.String()) })
	addr := addrRE.FindStringSubmatch(stderr.String())[1]

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	start := uint64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "inventory")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId:           bytes.Repeat([]byte{0xab}, 16),
			SpanId:            bytes.Repeat([]byte{0xcd}, 8),
			Name:              "shop.inventory.v1.InventoryService/Restock",
			Kind:              tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: start,
			EndTimeUnixNano:   start + 1500000,
			Attributes: []*commonpb.KeyValue{
				str("trustmesh.peer.spiffe_id", "spiffe://shop.example/ns/shop/sa/orders"),
				str("trustmesh.authz.decision", "deny"),
			},
		}}}},
	}}}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req); err != nil {
		t.Fatalf("Export: %v", err)
	}
	want := "trace abababababababababababababababab\n" +
		"inventory  server  shop.inventory.v1.InventoryService/Restock  caller=spiffe://shop.example/ns/shop/sa/orders  decision=deny  1.5ms\n\n"
	testsync.WaitFor(t, "the tree", func() bool { return stdout.String() != "" })
	if got := stdout.String(); got != want {
		t.Errorf("stdout:\n%q\nwant:\n%q", got, want)
	}
}
