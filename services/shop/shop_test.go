package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// startMesh runs the whole sample mesh on free loopback ports with a fresh
// development PKI, and stops it when the test ends.
func startMesh(t *testing.T, configure ...func(*shop.Config)) *shop.Mesh {
	t.Helper()
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := shop.Config{CertDir: dir, Addrs: addrs, StepInterval: 50 * time.Millisecond,
		PolicyFile: filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")}
	for _, c := range configure {
		c(&cfg)
	}
	m, err := shop.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := m.Wait(); err != nil {
			t.Errorf("mesh stopped with: %v", err)
		}
	})
	return m
}

// grpcurl runs the real grpcurl binary as alice (or with the given TLS
// flags) against the gateway.
func grpcurl(t *testing.T, tlsFlags []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testtool.Path(t, "grpcurl"), append(tlsFlags, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func aliceFlags(dir string) []string {
	return []string{"-cacert", filepath.Join(dir, "bundle.pem"),
		"-cert", filepath.Join(dir, "alice.pem"), "-key", filepath.Join(dir, "alice-key.pem")}
}

func gatewayTarget(m *shop.Mesh) string {
	_, port, _ := net.SplitHostPort(m.Addrs[shop.Gateway])
	return "localhost:" + port
}

func TestGrpcurlThroughGateway(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	target := gatewayTarget(m)
	alice := aliceFlags(m.CertDir)

	out, err := grpcurl(t, alice, target, "list")
	if err != nil || !strings.Contains(out, "shop.gateway.v1.StorefrontService") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}

	out, err = grpcurl(t, alice, "-d", `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":2}]}`,
		target, "shop.gateway.v1.StorefrontService/PlaceOrder")
	if err != nil {
		t.Fatalf("grpcurl PlaceOrder: %v\n%s", err, out)
	}
	var placed struct {
		Order struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"order"`
	}
	if err := json.Unmarshal([]byte(out), &placed); err != nil || placed.Order.ID == "" {
		t.Fatalf("PlaceOrder output has no order id (%v):\n%s", err, out)
	}
	if placed.Order.Status != "ORDER_STATUS_CONFIRMED" {
		t.Errorf("status = %q, want ORDER_STATUS_CONFIRMED", placed.Order.Status)
	}

	out, err = grpcurl(t, alice, "-d", `{"order_id":"`+placed.Order.ID+`"}`, target, "shop.gateway.v1.StorefrontService/GetOrder")
	if err != nil || !strings.Contains(out, placed.Order.ID) {
		t.Fatalf("grpcurl GetOrder: %v\n%s", err, out)
	}

	out, err = grpcurl(t, alice, "-d", `{"order_id":"`+placed.Order.ID+`"}`, target, "shop.gateway.v1.StorefrontService/WatchOrder")
	if err != nil || !strings.Contains(out, "ORDER_STATUS_DELIVERED") {
		t.Fatalf("grpcurl WatchOrder did not end DELIVERED: %v\n%s", err, out)
	}

	out, err = grpcurl(t, alice, "-d", `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":0}]}`,
		target, "shop.gateway.v1.StorefrontService/PlaceOrder")
	if err == nil || !strings.Contains(out, "Code: InvalidArgument") {
		t.Errorf("PlaceOrder with quantity 0: %v\n%s", err, out)
	}
}

func TestGrpcurlWithoutValidCertificateIsRefused(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	target := gatewayTarget(m)
	foreign := t.TempDir()
	if _, err := sample.InitCerts(foreign, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name  string
		flags []string
		want  string
	}{
		{"no-client-certificate", []string{"-cacert", filepath.Join(m.CertDir, "bundle.pem")}, "certificate required"},
		{"certificate-from-another-ca", []string{"-cacert", filepath.Join(m.CertDir, "bundle.pem"),
			"-cert", filepath.Join(foreign, "alice.pem"), "-key", filepath.Join(foreign, "alice-key.pem")}, "bad certificate"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := grpcurl(t, tc.flags, target, "list")
			if err == nil {
				t.Fatalf("grpcurl list succeeded:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("grpcurl output does not mention %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestHealthProbeOnEveryService(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	probe := testtool.Path(t, "grpc-health-probe")
	for _, s := range shop.Services {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, probe, "-addr", m.Addrs[s], "-tls",
				"-tls-ca-cert", filepath.Join(m.CertDir, "bundle.pem"),
				"-tls-client-cert", filepath.Join(m.CertDir, "admin.pem"),
				"-tls-client-key", filepath.Join(m.CertDir, "admin-key.pem")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "SERVING") {
				t.Fatalf("grpc-health-probe %s: %v\n%s", s, err, out)
			}
		})
	}
}

// TestClients makes the same calls with a grpc-go client and a connect-go
// client (Connect, gRPC and gRPC-Web protocols).
func TestClients(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	creds, err := shop.LoadCredentials(m.CertDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	gatewayID := shop.WorkloadID(shop.Gateway)

	conn, err := mesh.DialGRPC(m.Addrs[shop.Gateway], creds, gatewayID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc, err := mesh.NewHTTPClient(creds, gatewayID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)

	type storefront interface {
		place(ctx context.Context, req *gatewayv1.PlaceOrderRequest) (*gatewayv1.Order, error)
		get(ctx context.Context, id string) (*gatewayv1.Order, error)
		watch(ctx context.Context, id string) ([]gatewayv1.OrderStatus, error)
	}
	clients := map[string]storefront{
		"grpc-go": grpcClient{gatewayv1.NewStorefrontServiceClient(conn)},
	}
	for name, opt := range map[string]connect.ClientOption{
		"connect-go/connect": connect.WithProtoJSON(), "connect-go/grpc": connect.WithGRPC(), "connect-go/grpc-web": connect.WithGRPCWeb(),
	} {
		clients[name] = connectClient{gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+m.Addrs[shop.Gateway], opt)}
	}
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			order, err := c.place(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice",
				Items: []*gatewayv1.CartItem{{ProductId: "sku-pear", Quantity: 1}}})
			if err != nil {
				t.Fatalf("PlaceOrder: %v", err)
			}
			got, err := c.get(ctx, order.GetId())
			if err != nil || got.GetId() != order.GetId() {
				t.Fatalf("GetOrder(%s) = %v, %v", order.GetId(), got, err)
			}
			statuses, err := c.watch(ctx, order.GetId())
			if err != nil {
				t.Fatalf("WatchOrder: %v", err)
			}
			if len(statuses) == 0 || statuses[len(statuses)-1] != gatewayv1.OrderStatus_ORDER_STATUS_DELIVERED {
				t.Errorf("WatchOrder statuses = %v, want to end DELIVERED", statuses)
			}
			_, err = c.get(ctx, "ord_missing")
			if code := codeOf(err); code != codes.NotFound {
				t.Errorf("GetOrder(unknown) code = %v (%v), want NotFound", code, err)
			}
			_, err = c.place(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice",
				Items: []*gatewayv1.CartItem{{ProductId: "sku-apple", Quantity: 1_000_000}}})
			if code := codeOf(err); code != codes.FailedPrecondition {
				t.Errorf("PlaceOrder(short stock) code = %v (%v), want FailedPrecondition", code, err)
			}
		})
	}
}

func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return codes.Code(ce.Code())
	}
	return status.Code(err)
}

type grpcClient struct {
	c gatewayv1.StorefrontServiceClient
}

func (g grpcClient) place(ctx context.Context, req *gatewayv1.PlaceOrderRequest) (*gatewayv1.Order, error) {
	resp, err := g.c.PlaceOrder(ctx, req)
	return resp.GetOrder(), err
}

func (g grpcClient) get(ctx context.Context, id string) (*gatewayv1.Order, error) {
	resp, err := g.c.GetOrder(ctx, &gatewayv1.GetOrderRequest{OrderId: id})
	return resp.GetOrder(), err
}

func (g grpcClient) watch(ctx context.Context, id string) ([]gatewayv1.OrderStatus, error) {
	stream, err := g.c.WatchOrder(ctx, &gatewayv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		return nil, err
	}
	var out []gatewayv1.OrderStatus
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, msg.GetOrder().GetStatus())
	}
}

type connectClient struct {
	c gatewayv1connect.StorefrontServiceClient
}

func (c connectClient) place(ctx context.Context, req *gatewayv1.PlaceOrderRequest) (*gatewayv1.Order, error) {
	resp, err := c.c.PlaceOrder(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetOrder(), nil
}

func (c connectClient) get(ctx context.Context, id string) (*gatewayv1.Order, error) {
	resp, err := c.c.GetOrder(ctx, connect.NewRequest(&gatewayv1.GetOrderRequest{OrderId: id}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetOrder(), nil
}

func (c connectClient) watch(ctx context.Context, id string) ([]gatewayv1.OrderStatus, error) {
	stream, err := c.c.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: id}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var out []gatewayv1.OrderStatus
	for stream.Receive() {
		out = append(out, stream.Msg().GetOrder().GetStatus())
	}
	return out, stream.Err()
}
