package otelenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ExporterPrometheus is the OTEL_METRICS_EXPORTER value that serves metrics
// for Prometheus to scrape, on OTEL_EXPORTER_PROMETHEUS_HOST and
// OTEL_EXPORTER_PROMETHEUS_PORT.
const ExporterPrometheus = "prometheus"

// The specification's defaults for the Prometheus exporter's address, which
// autoexport uses too.
const (
	defaultPrometheusHost = "localhost"
	defaultPrometheusPort = "9464"
)

// PrometheusServer is one Prometheus endpoint, /metrics over plain HTTP, for
// several [Providers] in one process: `shop up` runs four services, and
// autoexport would start one server per Providers, all on the same port. Pass
// it to each [Setup] with [WithPrometheusServer]; every series it serves
// carries the label service_name, the service.name of the Providers that
// recorded it (their target_info series carry the whole resource).
// [ListenPrometheus] makes one; stop it with Shutdown.
type PrometheusServer struct {
	reg    *prometheus.Registry
	srv    *http.Server
	addr   string
	served chan error // the result of srv.Serve

	mu       sync.Mutex
	services map[string]bool // the service.name of each live Providers

	shutdownOnce sync.Once
	shutdownErr  error
}

// ListenPrometheus listens on
// OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT (localhost and
// 9464 when unset, as the specification and autoexport say; port 0 takes a
// free port, which [PrometheusServer.URL] tells) and serves /metrics there
// until [PrometheusServer.Shutdown]. A port that is not a number from 0 to
// 65535, or an address that cannot be bound, is an error naming the
// variables.
func ListenPrometheus() (*PrometheusServer, error) {
	host, port, err := prometheusHostPort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otelenv: serve Prometheus metrics on %s (OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT): %w", addr, err)
	}
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s := &PrometheusServer{
		reg: reg,
		// The timeouts autoexport's own server has.
		srv:      &http.Server{Handler: mux, ReadTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second},
		addr:     net.JoinHostPort(host, port),
		served:   make(chan error, 1),
		services: map[string]bool{},
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// URL is where Prometheus scrapes: http://HOST:PORT/metrics, with the host
// as OTEL_EXPORTER_PROMETHEUS_HOST names it and the port bound.
func (s *PrometheusServer) URL() string { return "http://" + s.addr + "/metrics" }

// Shutdown stops serving, letting the scrapes in progress finish until ctx
// ends, and reports whether the server had failed. Shut the [Providers]
// down first: their last metrics are lost with the server anyway, since
// Prometheus pulls. Only the first call does the work; later calls return
// its result.
func (s *PrometheusServer) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		var errs []error
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("otelenv: shut down Prometheus server on %s: %w", s.addr, err))
		}
		if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("otelenv: Prometheus server on %s: %w", s.addr, err))
		}
		s.shutdownErr = errors.Join(errs...)
	})
	return s.shutdownErr
}

// reader returns a metric reader that feeds s's registry, each series
// labelled with res's service.name. Two live readers of one service.name
// would serve colliding series (a scrape would then fail), so the second is
// an error; shutting a reader down frees its name.
func (s *PrometheusServer) reader(res *resource.Resource) (sdkmetric.Reader, error) {
	v, _ := res.Set().Value(semconv.ServiceNameKey)
	name := v.AsString()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.services[name] {
		return nil, fmt.Errorf("otelenv: service.name %q already has its metrics on the Prometheus endpoint %s: give each service its own name (is OTEL_SERVICE_NAME set?)", name, s.URL())
	}
	exp, err := promexporter.New(
		promexporter.WithRegisterer(s.reg),
		promexporter.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(semconv.ServiceNameKey)),
	)
	if err != nil {
		return nil, fmt.Errorf("otelenv: Prometheus exporter for %q: %w", name, err)
	}
	s.services[name] = true
	return &sharedPromReader{Reader: exp, release: func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.services, name)
	}}, nil
}

// sharedPromReader is one Providers' reader on a [PrometheusServer]. The
// registry keeps its collector (unchecked collectors cannot be unregistered),
// which serves nothing once the reader is shut down.
type sharedPromReader struct {
	sdkmetric.Reader
	releaseOnce sync.Once
	release     func()
}

func (r *sharedPromReader) Shutdown(ctx context.Context) error {
	err := r.Reader.Shutdown(ctx)
	r.releaseOnce.Do(r.release)
	return err
}

// prometheusHostPort reads OTEL_EXPORTER_PROMETHEUS_HOST and
// OTEL_EXPORTER_PROMETHEUS_PORT, with their defaults, and checks the port:
// net.Listen would also take a service name ("http") for one.
func prometheusHostPort() (host, port string, err error) {
	host = os.Getenv("OTEL_EXPORTER_PROMETHEUS_HOST")
	if host == "" {
		host = defaultPrometheusHost
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") // [::1] as well as ::1
	port = os.Getenv("OTEL_EXPORTER_PROMETHEUS_PORT")
	if port == "" {
		port = defaultPrometheusPort
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("otelenv: OTEL_EXPORTER_PROMETHEUS_PORT=%q: want a port number from 0 to 65535", port)
	}
	return host, port, nil
}
