package leancore_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/trustmesh/trustmesh"

// core lists the toolkit packages a library user imports, and telemetry,
// the part of the OTel support they import.
var core = []string{"identity", "policy", "interceptors", "mesh", "certs", "tokens", "telemetry"}

// forbidden lists the import paths (exactly, or as a prefix followed by
// "/") that the core must not link, each with the reason.
var forbidden = []struct{ path, why string }{
	{"go.opentelemetry.io/otel/exporters", "an OTel exporter"},
	{"go.opentelemetry.io/contrib/exporters", "an OTel exporter"},
	{"github.com/prometheus", "Prometheus"},
	{"go.opentelemetry.io/proto/otlp/collector", "the OTLP collector services (a receiver)"},
	{module + "/telemetry/otelenv", "the OTel set-up for binaries"},
	{module + "/telemetry/tracetree", "the trace-tree printer and OTLP receiver"},
	{module + "/gen", "the sample's generated code"},
	{module + "/services", "the sample mesh"},
}

// reason returns why path may not be linked into the core, or "".
func reason(path string) string {
	for _, f := range forbidden {
		if path == f.path || strings.HasPrefix(path, f.path+"/") {
			return f.why
		}
	}
	return ""
}

// importGraph runs `go list -deps` on pkgs and returns every package's
// imports (not its tests').
func importGraph(t *testing.T, pkgs ...string) map[string][]string {
	t.Helper()
	gocmd, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("leancore: find the go command: %v", err)
	}
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}
	cmd := exec.Command(gocmd, append(args, pkgs...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("leancore: go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, stderr.Bytes())
	}
	graph := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	for _, p := range pkgs {
		if _, ok := graph[p]; !ok {
			t.Fatalf("leancore: go list -deps printed no %s", p)
		}
	}
	return graph
}

// leaks returns, for root, one line per forbidden package that the import
// graph reaches first on some path from root (what lies behind it is not
// listed; root itself is not checked), with the shortest chain of imports
// that leads to it, sorted.
func leaks(graph map[string][]string, root string) []string {
	via := map[string]string{root: ""}
	queue := []string{root}
	var found []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if why := reason(p); why != "" && p != root {
			chain := []string{short(p)}
			for q := via[p]; q != ""; q = via[q] {
				chain = append(chain, short(q))
			}
			slices.Reverse(chain)
			found = append(found, fmt.Sprintf("%s (%s), through %s", p, why, strings.Join(chain, " -> ")))
			continue
		}
		for _, imp := range graph[p] {
			if _, seen := via[imp]; !seen {
				via[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	slices.Sort(found)
	return found
}

// short returns path relative to the module, if it is one of ours.
func short(path string) string { return strings.TrimPrefix(path, module+"/") }

// TestCoreLinksNoExporter: a program that imports any core package links no
// exporter, no Prometheus, no OTLP receiver and nothing of the sample.
func TestCoreLinksNoExporter(t *testing.T) {
	t.Parallel()
	pkgs := make([]string, len(core))
	for i, p := range core {
		pkgs[i] = module + "/" + p
	}
	graph := importGraph(t, pkgs...)
	for _, p := range pkgs {
		for _, l := range leaks(graph, p) {
			t.Errorf("%s links %s", strings.TrimPrefix(p, module+"/"), l)
		}
	}
}

// TestReason: the forbidden paths match whole path elements, and what the
// core may use does not match.
func TestReason(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		path      string
		forbidden bool
	}{
		{"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc", true},
		{"go.opentelemetry.io/contrib/exporters/autoexport", true},
		{"github.com/prometheus/client_golang/prometheus", true},
		{"go.opentelemetry.io/proto/otlp/collector/trace/v1", true},
		{module + "/gen/shop/orders/v1", true},
		{module + "/services", true},
		{module + "/services/shop", true},
		{module + "/telemetry/otelenv", true},
		{module + "/telemetry/tracetree", true},
		// What the core may use: the API, the SDK-free instrumentation, the
		// OTLP data types, and look-alike names.
		{"go.opentelemetry.io/otel/attribute", false},
		{"go.opentelemetry.io/otel/exporterstool", false},
		{"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc", false},
		{"go.opentelemetry.io/proto/otlp/trace/v1", false},
		{"github.com/prometheusx/client", false},
		{module + "/telemetry", false},
		{module + "/generate", false},
		{module + "/servicesx", false},
	}
	for _, tc := range testCases {
		if got := reason(tc.path) != ""; got != tc.forbidden {
			t.Errorf("reason(%q) = %q, want forbidden %v", tc.path, reason(tc.path), tc.forbidden)
		}
	}
}

// TestLeaksFindsExporters: the check is not vacuous; it finds the exporters
// and the receiver where they do live, and the sample in the sample's binary.
func TestLeaksFindsExporters(t *testing.T) {
	t.Parallel()
	testCases := []struct{ pkg, want string }{
		{"telemetry/otelenv", "go.opentelemetry.io/contrib/exporters/autoexport (an OTel exporter), through " +
			"telemetry/otelenv -> go.opentelemetry.io/contrib/exporters/autoexport"},
		{"telemetry/tracetree", "go.opentelemetry.io/proto/otlp/collector/trace/v1 (the OTLP collector services (a receiver)), through " +
			"telemetry/tracetree -> go.opentelemetry.io/proto/otlp/collector/trace/v1"},
		{"cmd/shop", module + "/services/shop (the sample mesh), through cmd/shop -> services/shop"},
		{"cmd/shop", module + "/telemetry/otelenv (the OTel set-up for binaries), through cmd/shop -> telemetry/otelenv"},
	}
	graph := importGraph(t, module+"/telemetry/otelenv", module+"/telemetry/tracetree", module+"/cmd/shop")
	for _, tc := range testCases {
		if got := leaks(graph, module+"/"+tc.pkg); !slices.Contains(got, tc.want) {
			t.Errorf("leaks(%s) = %q, want it to hold %q", tc.pkg, got, tc.want)
		}
	}
}
