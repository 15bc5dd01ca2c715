package main

import (
	"fmt"
	"slices"
	"strings"
)

// The stacks and modes of a configuration.
const (
	stackGRPC       = "grpc-go"
	stackConnect    = "connect-go"
	stackPlaceOrder = "placeorder" // the sample's four services, PlaceOrder end to end

	modeBare       = "bare"       // the stack alone, with mTLS
	modeWorkers    = "workers"    // grpc-go only: bare, with the stream workers a trustmesh GRPCServer keeps (mesh.DefaultStreamWorkers)
	modeOff        = "off"        // trustmesh, telemetry off
	modeUnsampled  = "unsampled"  // trustmesh, OTEL_TRACES_SAMPLER=always_off, metrics none: otelenv reports Off
	modeUndeclared = "undeclared" // the same, with the instrumentation installed anyway (Unsampled not set)
	modeAlwaysOn   = "always-on"  // trustmesh, every span sampled, batch export over OTLP/HTTP
	modeShop       = "shop"       // the real `shop serve NAME` binary with its defaults, always-on tracing
)

// The workloads: what the driver calls.
const (
	workloadList       = "list"       // inventory ListProducts
	workloadHealth     = "health"     // grpc.health.v1.Health/Check of the server ("")
	workloadPlaceOrder = "placeorder" // the gateway's PlaceOrder, which fans out to the other three
)

// config is one server configuration: a stack and a mode.
type config struct{ stack, mode string }

func (c config) String() string { return c.stack + "/" + c.mode }

func parseConfig(s string) (config, error) {
	stack, mode, _ := strings.Cut(s, "/")
	c := config{stack: stack, mode: mode}
	switch stack {
	case stackGRPC, stackConnect:
		switch mode {
		case modeBare, modeOff, modeUnsampled, modeUndeclared, modeAlwaysOn, modeShop:
			return c, nil
		case modeWorkers:
			if stack == stackGRPC {
				return c, nil
			}
			return c, fmt.Errorf("meshbench: configuration %q: mode %s is grpc-go's (connect-go serves each call on net/http's goroutine)", s, mode)
		}
		return c, fmt.Errorf("meshbench: configuration %q: mode %q: want %s, %s (grpc-go), %s, %s, %s, %s or %s", s, mode,
			modeBare, modeWorkers, modeOff, modeUnsampled, modeUndeclared, modeAlwaysOn, modeShop)
	case stackPlaceOrder:
		switch mode {
		case modeBare, modeOff, modeAlwaysOn:
			return c, nil
		}
		return c, fmt.Errorf("meshbench: configuration %q: mode %q: want %s, %s or %s", s, mode, modeBare, modeOff, modeAlwaysOn)
	}
	return c, fmt.Errorf("meshbench: configuration %q: want %s/MODE, %s/MODE or %s/MODE", s, stackGRPC, stackConnect, stackPlaceOrder)
}

// runsShop reports whether c's processes are the real `shop serve`
// binary rather than this one.
func (c config) runsShop() bool {
	return c.mode == modeShop || (c.stack == stackPlaceOrder && c.mode != modeBare)
}

// shopService is the sample service that STACK/shop runs: inventory on
// grpc-go; on connect-go payments, the sample's connect-go service without
// downstreams (it has health but no ListProducts).
func (c config) shopService() string {
	if c.stack == stackConnect {
		return "payments"
	}
	return "inventory"
}

// env is the OpenTelemetry environment of c's server processes, exporting
// spans (if any) over OTLP/HTTP to sink.
func (c config) env(sink string) []string {
	env := []string{"OTEL_METRICS_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=" + sink, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
	switch c.mode {
	case modeUnsampled, modeUndeclared:
		return append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_off")
	case modeAlwaysOn, modeShop:
		return append(env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_on")
	}
	// off: exporters none, which otelenv (and so `shop serve`) reports off.
	return append(env, "OTEL_TRACES_EXPORTER=none")
}

// target is one measured row: a configuration under one workload.
type target struct {
	cfg config
	wl  string
}

// targets expands configs into the rows to measure: each per-hop
// configuration under each of workloads, each placeorder configuration
// under PlaceOrder. STACK/shop is checked against the same stack's bare
// server, which must be among configs; connect-go/shop has no
// ListProducts, so it gets the health row only (and is an error without
// one).
func targets(configs []config, workloads []string) ([]target, error) {
	has := map[config]bool{}
	for _, c := range configs {
		has[c] = true
	}
	var out []target
	for _, c := range configs {
		if c.stack == stackPlaceOrder {
			out = append(out, target{c, workloadPlaceOrder})
			continue
		}
		if c.mode == modeShop {
			if bare := (config{c.stack, modeBare}); !has[bare] {
				return nil, fmt.Errorf("meshbench: configuration %s is checked against %s: add %s to -configs", c, bare, bare)
			}
		}
		for _, wl := range workloads {
			if c == (config{stackConnect, modeShop}) && wl == workloadList {
				continue // health only, as documented; an error below if that leaves nothing
			}
			out = append(out, target{c, wl})
		}
		if c == (config{stackConnect, modeShop}) && !slices.Contains(workloads, workloadHealth) {
			return nil, fmt.Errorf("meshbench: configuration %s (shop serve payments) serves no ListProducts: measure it with -workload health (or list,health)", c)
		}
	}
	return out, nil
}

func parseWorkloads(s string) ([]string, error) {
	var out []string
	for w := range strings.SplitSeq(s, ",") {
		w = strings.TrimSpace(w)
		switch w {
		case workloadList, workloadHealth:
		default:
			return nil, fmt.Errorf("meshbench: -workload %q: want %s, %s or %s,%s", s, workloadList, workloadHealth, workloadList, workloadHealth)
		}
		for _, seen := range out {
			if seen == w {
				return nil, fmt.Errorf("meshbench: -workload %q: %s given twice", s, w)
			}
		}
		out = append(out, w)
	}
	return out, nil
}
