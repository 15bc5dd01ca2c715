package otelenv_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/telemetry/internal/oteltest"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// promEnv sets the environment of a Prometheus test: metrics for Prometheus
// on 127.0.0.1:port, no traces.
func promEnv(t *testing.T, port string) {
	t.Helper()
	oteltest.ClearOTelEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_PORT", port)
}

// freePort returns a port nothing listens on (for servers that do not tell
// the port they bound).
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

// setUp runs Setup for service with extra options, shut down at the end of
// the test, and counts one authorization decision on its meter provider.
func setUp(t *testing.T, service string, opts ...otelenv.Option) *otelenv.Providers {
	t.Helper()
	p, err := otelenv.Setup(context.Background(), service, "1.2.3", append(opts, otelenv.WithoutGlobal())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("shut down %s: %v", service, err)
		}
	})
	c, err := p.MeterProvider.Meter("test").Int64Counter("trustmesh.authz.decisions")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	return p
}

// scrape GETs url and returns the body of a 200 answer.
func scrape(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left behind for goleak
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

// servicesOf lists the service_name labels of metric's series in a scrape.
func servicesOf(body, metric string) []string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + `\{[^}]*\bservice_name="([^"]*)"`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return names
}

// TestPrometheusServerSharedByServices is `shop up`: several services in one
// process, one /metrics, each series labelled with its service. Without
// the shared server the second Setup would fail to bind the port.
func TestPrometheusServerSharedByServices(t *testing.T) {
	promEnv(t, "0")
	s, err := otelenv.ListenPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
	}()
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[1-9][0-9]*/metrics$`).MatchString(s.URL()) {
		t.Fatalf("URL = %q, want http://127.0.0.1:PORT/metrics with the port bound", s.URL())
	}
	for _, name := range []string{"gateway", "orders", "inventory"} {
		setUp(t, name, otelenv.WithPrometheusServer(s))
	}
	body := scrape(t, s.URL())
	if got, want := servicesOf(body, "trustmesh_authz_decisions_total"), []string{"gateway", "inventory", "orders"}; !slices.Equal(got, want) {
		t.Errorf("trustmesh_authz_decisions_total series for services %v, want %v; scraped:\n%s", got, want, body)
	}
	if got := servicesOf(body, "target_info"); len(got) != 3 {
		t.Errorf("target_info series for services %v, want one per service", got)
	}
}

// TestPrometheusServerRejectsSameServiceTwice: two live Providers of one
// service.name would serve colliding series, and every scrape would fail.
func TestPrometheusServerRejectsSameServiceTwice(t *testing.T) {
	promEnv(t, "0")
	s, err := otelenv.ListenPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	first, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.WithoutGlobal(), otelenv.WithPrometheusServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_SERVICE_NAME", "orders")
	_, err = otelenv.Setup(context.Background(), "payments", "1.2.3", otelenv.WithoutGlobal(), otelenv.WithPrometheusServer(s))
	want := `otelenv: service.name "orders" already has its metrics on the Prometheus endpoint ` + s.URL() +
		`: give each service its own name (is OTEL_SERVICE_NAME set?)`
	if err == nil || err.Error() != want {
		t.Fatalf("second Setup of orders: %v\nwant: %s", err, want)
	}
	// Once the first is shut down, the name is free again, and only the
	// live Providers' series are served.
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	setUp(t, "orders", otelenv.WithPrometheusServer(s))
	if got := servicesOf(scrape(t, s.URL()), "trustmesh_authz_decisions_total"); !slices.Equal(got, []string{"orders"}) {
		t.Errorf("series for services %v, want orders once", got)
	}
}

// TestPrometheusOwnServer is `shop serve NAME`: without a shared server,
// autoexport serves the one service's metrics on
// OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT.
func TestPrometheusOwnServer(t *testing.T) {
	port := freePort(t)
	promEnv(t, port)
	setUp(t, "payments")
	body := scrape(t, "http://127.0.0.1:"+port+"/metrics")
	if got := servicesOf(body, "target_info"); !slices.Equal(got, []string{"payments"}) {
		t.Errorf("target_info for services %v, want payments; scraped:\n%s", got, body)
	}
	if !strings.Contains(body, "\ntrustmesh_authz_decisions_total{") {
		t.Errorf("no trustmesh_authz_decisions_total in:\n%s", body)
	}
}

func TestPrometheusErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())

	testCases := []struct {
		name   string
		port   string
		listen bool // ListenPrometheus, else Setup with autoexport's server
		want   string
	}{
		// net.Listen would read "http" as port 80.
		{"setup-port-not-a-number", "http", false, `otelenv: OTEL_EXPORTER_PROMETHEUS_PORT="http": want a port number from 0 to 65535`},
		{"listen-port-not-a-number", "http", true, `otelenv: OTEL_EXPORTER_PROMETHEUS_PORT="http": want a port number from 0 to 65535`},
		{"listen-port-too-big", "65536", true, `otelenv: OTEL_EXPORTER_PROMETHEUS_PORT="65536": want a port number from 0 to 65535`},
		{"listen-port-negative", "-1", true, `otelenv: OTEL_EXPORTER_PROMETHEUS_PORT="-1": want a port number from 0 to 65535`},
		{"listen-port-busy", busyPort, true, "otelenv: serve Prometheus metrics on 127.0.0.1:" + busyPort +
			" (OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT): listen tcp 127.0.0.1:" + busyPort + ": bind: address already in use"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			promEnv(t, tc.port)
			if tc.listen {
				s, err := otelenv.ListenPrometheus()
				if err == nil {
					_ = s.Shutdown(context.Background())
				}
				if err == nil || err.Error() != tc.want {
					t.Errorf("ListenPrometheus error:\n got: %v\nwant: %s", err, tc.want)
				}
				return
			}
			p, err := otelenv.Setup(context.Background(), "orders", "1.2.3", otelenv.WithoutGlobal())
			if err == nil {
				_ = p.Shutdown(context.Background())
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Setup error:\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}
