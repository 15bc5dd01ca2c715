package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

func TestUsageErrors(t *testing.T) {
	testCases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no-command", nil, nil, "shop: no command given"},
		{"unknown-command", nil, []string{"down"}, `shop: unknown command "down" (want up, serve, traces or version; see 'shop help')`},
		{"serve-without-name", nil, []string{"serve"}, "shop: serve: missing service NAME (gateway, orders, inventory or payments)"},
		{"serve-unknown-service", nil, []string{"serve", "billing"}, `shop: serve: unknown service "billing" (want gateway, orders, inventory or payments)`},
		{"bad-addr-flag", nil, []string{"up", "--orders-addr", "nine"}, `shop: --orders-addr "nine": want host:port`},
		{"negative-limit", nil, []string{"up", "--payment-limit", "-1"}, "shop: --payment-limit -1: must not be negative"},
		{"bad-log-level", nil, []string{"up", "--log-level", "loud"}, `shop: --log-level "loud": want debug, info, warn or error`},
		{"bad-env-duration", map[string]string{"SHOP_STEP_INTERVAL": "soon"}, []string{"up"},
			`shop: env SHOP_STEP_INTERVAL="soon" (flag --step-interval, e.g. "0s"): parse error`},
		{"unknown-flag", nil, []string{"up", "--colour"}, "shop: up: flag provided but not defined: -colour"},
		{"negative-rate-limit", nil, []string{"up", "--rate-limit", "-5"}, "shop: --rate-limit -5: must not be negative"},
		{"burst-without-rate", nil, []string{"up", "--rate-burst", "10"}, "shop: --rate-burst 10: must be positive, with a --rate-limit"},
		{"bad-env-rate", map[string]string{"SHOP_RATE_LIMIT": "fast"}, []string{"up"}, `shop: env SHOP_RATE_LIMIT="fast" (flag --rate-limit, e.g. "0"): parse error`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.want) {
				t.Errorf("last stderr line:\n got: %s\nwant: %s...", last, tc.want)
			}
		})
	}
}

func TestServeMissingCertificates(t *testing.T) {
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), []string{"serve", "inventory", "--cert-dir", dir, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := "shop: inventory: certs: read SVID: open " + dir + "/inventory.pem: no such file or directory"
	if got := stderr.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, "meshctl certs init --dir "+dir) {
		t.Errorf("stderr = %q, want it to start %q and say how to create the certificates", got, want)
	}
}

// upEnv clears the OTEL_* variables that would change what `up` exports,
// and sends traces nowhere (t.Setenv: the test must not be parallel).
func upEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRICS_PRODUCERS", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// scrape GETs url and returns the body of a 200 answer.
func scrape(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// servicesOf lists the service_name labels of metric's series in a scrape,
// each once.
func servicesOf(body, metric string) []string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + `\{[^}]*\bservice_name="([^"]*)"`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestUpServesOnePrometheusEndpoint runs `shop up` with
// OTEL_METRICS_EXPORTER=prometheus, as `make run` would: the four services
// in this process share one /metrics on OTEL_EXPORTER_PROMETHEUS_PORT (each
// binding it would fail with "address already in use"), the banner says
// where, every series names its service, and the port is free again once up
// returns.
func TestUpServesOnePrometheusEndpoint(t *testing.T) {
	upEnv(t)
	port := freePort(t)
	t.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_PORT", port)
	dir := t.TempDir()
	args := []string{"up", "--cert-dir", dir, "--policy", filepath.Join(testtool.RepoRoot(t), "services", "policy.yaml")}
	for _, s := range shop.Services {
		args = append(args, "--"+s+"-addr", "127.0.0.1:0")
	}
	var stdout, stderr testsync.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()

	gatewayRE := regexp.MustCompile(`(?m)^  gateway   (127\.0\.0\.1:\d+)  `)
	deadline := time.Now().Add(20 * time.Second)
	for !gatewayRE.MatchString(stdout.String()) {
		select {
		case code := <-done:
			t.Fatalf("up exited with %d before its banner; stderr:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 20s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	banner := stdout.String()
	url := "http://127.0.0.1:" + port + "/metrics"
	if want := "\n  metrics   " + url + "  Prometheus, every service's series labelled service_name\n"; !strings.Contains(banner, want) {
		t.Errorf("banner lacks %q:\n%s", want, banner)
	}

	// PlaceOrder goes through all four services.
	gateway := gatewayRE.FindStringSubmatch(banner)[1]
	creds, err := shop.LoadCredentials(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	hc, err := mesh.NewHTTPClient(creds, shop.WorkloadID(shop.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	client := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+gateway)
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	if _, err := client.PlaceOrder(cctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: "alice",
		Items: []*gatewayv1.CartItem{{ProductId: "sku-apple", Quantity: 1}}})); err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	if _, err := client.ListProducts(cctx, connect.NewRequest(&gatewayv1.ListProductsRequest{})); err != nil {
		t.Fatalf("ListProducts: %v", err)
	}

	// Each service counted its authorization decision before answering.
	body := scrape(t, url)
	if got, want := servicesOf(body, "trustmesh_authz_decisions_total"), []string{"gateway", "inventory", "orders", "payments"}; !slices.Equal(got, want) {
		t.Errorf("trustmesh_authz_decisions_total for services %v, want %v; scraped:\n%s", got, want, body)
	}
	// A server records an RPC's duration as the call ends, which may be
	// just after the client has its answer: poll.
	for i := 0; ; i++ {
		got := servicesOf(body, "rpc_server_call_duration_seconds_count")
		if slices.Contains(got, "gateway") && slices.Contains(got, "orders") {
			break
		}
		if i == 100 {
			t.Fatalf("rpc_server_call_duration_seconds series for %v, want gateway (connect-go) and orders (grpc-go); scraped:\n%s", got, body)
		}
		time.Sleep(10 * time.Millisecond)
		body = scrape(t, url)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("up exited with %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("up did not return 20s after its context was cancelled")
	}
	if strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("stderr mentions a second bind:\n%s", stderr.String())
	}
	// Stopped: the port can be bound again.
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("metrics port still taken after up returned: %v", err)
	}
	_ = ln.Close()
}

func TestUpPrometheusErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	testCases := []struct {
		name  string
		port  string
		spire bool
		code  int
		want  string // all of stderr
	}{
		{"port-not-a-number", "metrics", false, 1, `shop: otelenv: OTEL_EXPORTER_PROMETHEUS_PORT="metrics": want a port number from 0 to 65535`},
		{"port-busy", busyPort, false, 1, "shop: otelenv: serve Prometheus metrics on 127.0.0.1:" + busyPort +
			" (OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT): listen tcp 127.0.0.1:" + busyPort + ": bind: address already in use"},
		{"spire", "9464", true, 2, "shop: up --spire: OTEL_METRICS_EXPORTER=prometheus: the four services run in four processes, which would all bind OTEL_EXPORTER_PROMETHEUS_PORT; run `shop up` without --spire for one /metrics"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			upEnv(t)
			t.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
			t.Setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
			t.Setenv("OTEL_EXPORTER_PROMETHEUS_PORT", tc.port)
			dir := t.TempDir()
			args := []string{"up", "--cert-dir", dir}
			if tc.spire {
				args = append(args, "--spire")
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit code = %d, want %d", code, tc.code)
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr:\n got: %s\nwant: %s", got, tc.want)
			}
			// Nothing was created before the error.
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("--cert-dir holds %d files, want none", len(entries))
			}
		})
	}
}
