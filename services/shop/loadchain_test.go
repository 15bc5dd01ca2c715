//go:build load

package shop_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/trustmesh/trustmesh/certs"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// TestLoadChain compares, with ghz in one run, a bare grpc-go server (mTLS,
// no interceptors) and the full trustmesh chain (SVID verification,
// identity, authorization, tracing always on with batch export) serving the
// same method, inventory ListProducts, to the same client identity. It
// records throughput and p99; it asserts only that every call succeeds
// (timings are recorded in BENCHMARKS.md, not asserted).
func TestLoadChain(t *testing.T) {
	requests := envInt(t, "LOAD_CHAIN_REQUESTS", 50_000)
	dir := t.TempDir()
	if _, err := sample.InitCerts(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.Load(filepath.Join(dir, "inventory.pem"), filepath.Join(dir, "inventory-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.LoadBundle(filepath.Join(dir, "bundle.pem"), shop.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	impl, err := inventory.New(inventory.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Bare: crypto/tls verifies the client against the CA; nothing else.
	roots := x509.NewCertPool()
	for _, c := range bundle.X509Authorities() {
		roots.AddCert(c)
	}
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	bare := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots})))
	inventoryv1.RegisterInventoryServiceServer(bare, impl)
	bareLn := listenLoad(t)
	go func() { _ = bare.Serve(bareLn) }()
	t.Cleanup(bare.Stop)

	// Full chain.
	engine, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "gateway-lists", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/shop/sa/gateway"}, To: []string{"/shop.inventory.v1.InventoryService/ListProducts"}},
		{Name: "admin-all", Effect: policy.Allow, From: []string{"spiffe://shop.example/ns/ops/sa/admin"}, To: []string{"*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(engine)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	full, err := mesh.NewGRPCServer(mesh.Credentials{SVID: svid, Bundles: bundle}, mesh.WithAuthorizer(authz),
		mesh.WithTelemetry(mesh.Telemetry{TracerProvider: tp, TrustRemote: true,
			Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}))
	if err != nil {
		t.Fatal(err)
	}
	inventoryv1.RegisterInventoryServiceServer(full, impl)
	fullLn := listenLoad(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- full.Serve(ctx, fullLn) }()
	t.Cleanup(func() { cancel(); <-done })

	root := testtool.RepoRoot(t)
	run := func(name string, ln net.Listener) ghzReport {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		args := []string{"--cacert", filepath.Join(dir, "bundle.pem"), "--cert", filepath.Join(dir, "gateway.pem"),
			"--key", filepath.Join(dir, "gateway-key.pem"), "--cname", "localhost",
			"--import-paths", filepath.Join(root, "proto"), "--proto", "shop/inventory/v1/inventory.proto",
			"--call", "shop.inventory.v1.InventoryService.ListProducts", "-d", "{}",
			"-n", fmt.Sprint(requests), "-c", "50", "--connections", "4", "-O", "json", "127.0.0.1:" + port}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer ccancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(cctx, testtool.Path(t, "ghz"), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("ghz %s: %v\n%s", name, err, stderr.String())
		}
		var r ghzReport
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("ghz report: %v", err)
		}
		if len(r.ErrorDistribution) != 0 || r.StatusCodeDist["OK"] != int64(requests) {
			t.Errorf("%s: errors %v, statuses %v; want %d OK", name, r.ErrorDistribution, r.StatusCodeDist, requests)
		}
		return r
	}
	// Alternate, so both see the same machine conditions.
	var bareR, fullR []ghzReport
	for range 2 {
		bareR = append(bareR, run("bare", bareLn))
		fullR = append(fullR, run("full", fullLn))
	}
	for i := range bareR {
		b, f := bareR[i], fullR[i]
		fmt.Printf("load-chain: round %d: bare rps=%.0f p99=%v | full rps=%.0f p99=%v | full/bare throughput=%.0f%% p99 added=%v\n",
			i+1, b.Rps, b.percentile(99), f.Rps, f.percentile(99), 100*f.Rps/b.Rps, f.percentile(99)-b.percentile(99))
	}
}

func listenLoad(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
