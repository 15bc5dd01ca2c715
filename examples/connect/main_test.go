package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/certs"
	quotesv1 "github.com/trustmesh/trustmesh/examples/connect/gen/quotes/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

var (
	replicaID  = spiffeid.RequireFromString("spiffe://example.org/ns/quotes/sa/replica")
	frontendID = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
	adminID    = spiffeid.RequireFromString("spiffe://example.org/ns/ops/sa/admin")
)

// protocols are the ways a connect-go client can call a connect-go server.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"connect-get", []connect.ClientOption{connect.WithHTTPGet()}},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
}

// TestRun runs what `go run .` runs and checks what it prints.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i, p := range []string{"Connect", "gRPC", "gRPC-Web"} {
		want.WriteString(p + ": AddQuote: count=" + string(rune('1'+i)) + "\n")
		want.WriteString(p + ": GetQuote: permission_denied: spiffe://example.org/user/alice may not call /quotes.v1.QuoteService/GetQuote\n")
	}
	if out.String() != want.String() {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want.String())
	}
}

// TestPolicy proves, over mutual TLS on 127.0.0.1 and every protocol, who
// may call what on a primary and a replica that share policy.yaml: its at:
// rules let people add quotes on the primary only, and the primary on the
// replica only.
func TestPolicy(t *testing.T) {
	ca := newCA(t)
	primary := start(t, ca, primaryID, "policy.yaml")
	replica := start(t, ca, replicaID, "policy.yaml")

	testCases := []struct {
		name   string
		caller spiffeid.ID
		server testServer
		call   func(context.Context, *quoteClient) error
		want   connect.Code // 0: allowed
	}{
		{"alice-adds-at-primary", aliceID, primary, add, 0},
		{"alice-adds-at-replica", aliceID, replica, add, connect.CodePermissionDenied},
		{"primary-adds-at-replica", primaryID, replica, add, 0},
		{"primary-adds-at-primary", primaryID, primary, add, connect.CodePermissionDenied},
		{"frontend-reads-at-replica", frontendID, replica, get, 0},
		{"frontend-adds-at-primary", frontendID, primary, add, connect.CodePermissionDenied},
		{"alice-reads-at-primary", aliceID, primary, get, connect.CodePermissionDenied},
		{"admin-checks-health", adminID, primary, health, 0},
		{"alice-checks-health", aliceID, primary, health, connect.CodePermissionDenied},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range testCases {
				t.Run(tc.name, func(t *testing.T) {
					client := newQuoteClient(t, ca, tc.caller, tc.server, p.opts...)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					err := tc.call(ctx, client)
					if got := connect.CodeOf(err); (tc.want == 0 && err != nil) || (tc.want != 0 && got != tc.want) {
						t.Fatalf("%v, want %v", err, codeName(tc.want))
					}
					if tc.want == connect.CodePermissionDenied {
						var cerr *connect.Error
						if !errors.As(err, &cerr) || !strings.HasPrefix(cerr.Message(), tc.caller.String()+" may not call /") {
							t.Errorf("denial %v does not name the caller and the method", err)
						}
					}
				})
			}
		})
	}
}

// TestUncoveredMethodStopsServe proves that a server whose policy lets no
// one call one of its methods (here: a replica without the rule that lets
// the primary add quotes) stops before it serves, naming the method.
func TestUncoveredMethodStopsServe(t *testing.T) {
	data, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	noReplicaRule := strings.ReplaceAll(string(data), "sa/replica", "sa/another-replica")
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(noReplicaRule), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), creds(t, ca, replicaID), replicaID, file, ln, slog.New(slog.DiscardHandler))
	want := "mesh: no allow rule covers 1 served method(s): /quotes.v1.QuoteService/AddQuote " +
		"(add allow rules for them to the policy or the protos' trustmesh.v1 access options, or pass WithCoverageWarnings to serve them to no one)"
	if err == nil || err.Error() != want {
		t.Errorf("serve: %v\nwant: %s", err, want)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open after serve failed")
	}
}

// quoteClient holds the quote service and health clients of one caller.
type quoteClient struct {
	quotes interface {
		AddQuote(context.Context, *connect.Request[quotesv1.AddQuoteRequest]) (*connect.Response[quotesv1.AddQuoteResponse], error)
		GetQuote(context.Context, *connect.Request[quotesv1.GetQuoteRequest]) (*connect.Response[quotesv1.GetQuoteResponse], error)
	}
	health *connect.Client[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse]
}

func add(ctx context.Context, c *quoteClient) error {
	_, err := c.quotes.AddQuote(ctx, connect.NewRequest(&quotesv1.AddQuoteRequest{Text: "a"}))
	return err
}

// get reads a quote; a collection with none yet answers NotFound, which
// also proves the call was allowed.
func get(ctx context.Context, c *quoteClient) error {
	_, err := c.quotes.GetQuote(ctx, connect.NewRequest(&quotesv1.GetQuoteRequest{}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil
	}
	return err
}

func health(ctx context.Context, c *quoteClient) error {
	resp, err := c.health.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
	if err == nil && resp.Msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return connect.NewError(connect.CodeUnavailable, nil)
	}
	return err
}

type testServer struct {
	addr string
	id   spiffeid.ID
}

func newCA(t *testing.T) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(primaryID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func creds(t *testing.T, ca *certs.CA, id spiffeid.ID) mesh.Credentials {
	t.Helper()
	svid, err := ca.Issue(certs.IssueRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return mesh.Credentials{SVID: svid, Bundles: ca.Bundle()}
}

// start serves the quote service as id until the test ends.
func start(t *testing.T, ca *certs.CA, id spiffeid.ID, policyFile string) testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, creds(t, ca, id), id, policyFile, ln, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return testServer{addr: ln.Addr().String(), id: id}
}

func newQuoteClient(t *testing.T, ca *certs.CA, caller spiffeid.ID, srv testServer, opts ...connect.ClientOption) *quoteClient {
	t.Helper()
	c := creds(t, ca, caller)
	quotes, hc, err := newClient(c, srv.addr, srv.id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	healthOpts := opts
	if len(opts) == 0 {
		healthOpts = []connect.ClientOption{connect.WithGRPC()} // grpc-health-probe's protocol
	}
	return &quoteClient{
		quotes: quotes,
		health: connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
			"https://"+srv.addr+"/grpc.health.v1.Health/Check", healthOpts...),
	}
}

func codeName(c connect.Code) string {
	if c == 0 {
		return "success"
	}
	return c.String()
}
