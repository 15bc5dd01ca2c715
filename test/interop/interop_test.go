//go:build interop

package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/services/shop/sample"
	"github.com/trustmesh/trustmesh/tokens"
)

// The tools the tier runs. Debian's python3 on purpose: python3-grpcio and
// python3-protobuf are installed for it, not for a pyenv one on PATH.
const (
	python       = "/usr/bin/python3"
	protoc       = "/usr/bin/protoc"
	pythonPlugin = "/usr/bin/grpc_python_plugin"
)

// deadline is every client call's deadline; an oversized request must be
// refused in well under it.
const deadline = 20 * time.Second

// bigIDBytes is the size of the oversized IDs: far over the services'
// 128-byte limit, under every stack's 4 MiB message limit, and over
// HTTP/2's usual 16 KiB header limits, so an error that echoed the ID into
// grpc-message would be cut off or stall a client.
const bigIDBytes = 200 << 10

// result is what a client script prints for one call, a JSON object a line.
type result struct {
	Case    string         `json:"case"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	MS      float64        `json:"ms"`
	Data    map[string]any `json:"data"`
}

// config is what the client scripts read (argv[1]).
type config struct {
	DescriptorSet string            `json:"descriptor_set"`
	Ports         map[string]string `json:"ports"`
	Down          string            `json:"down"`
	CA            string            `json:"ca"`
	Alice         keyPair           `json:"alice"`
	Admin         keyPair           `json:"admin"`
	Stranger      keyPair           `json:"stranger"`
	Token         string            `json:"token"`
	DeadlineMS    int64             `json:"deadline_ms"`
	BigIDBytes    int               `json:"big_id_bytes"`
}

type keyPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

func pair(dir, name string) keyPair {
	return keyPair{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
}

// tier is the running mesh and what the clients need to call it.
type tier struct {
	cfg     config
	cfgFile string
	pyOut   string
	log     *testsync.Buffer
	root    string
}

// TestInterop runs every third-party client against one mesh. Each client
// makes the same calls; the expectations are below, in one place.
func TestInterop(t *testing.T) {
	requireTools(t)
	tr := startTier(t)

	t.Run("grpcio", func(t *testing.T) {
		env := []string{"PYTHONPATH=" + tr.pyOut, "PYTHONDONTWRITEBYTECODE=1"}
		res, stderr := run(t, env, python, filepath.Join(tr.root, "test", "interop", "python", "client.py"), tr.cfgFile)
		check(t, "grpcio", res, grpcioWant)
		// The status says only that the connection broke: the reason, the
		// server's alert, is in the log grpcio's C core writes to stderr.
		if !strings.Contains(stderr, "SSL routines") {
			t.Errorf("grpcio: stderr has no TLS error (\"SSL routines\"):\n%s", stderr)
		}
	})
	t.Run("grpc-js", func(t *testing.T) {
		res, _ := run(t, nil, "node", filepath.Join(tr.root, "test", "interop", "node", "grpcjs.mjs"), tr.cfgFile)
		check(t, "grpc-js", res, grpcjsWant)
	})
	t.Run("connect-node", func(t *testing.T) {
		res, _ := run(t, nil, "node", filepath.Join(tr.root, "test", "interop", "node", "connect.mjs"), tr.cfgFile)
		check(t, "connect-node", res, connectWant)
	})
	t.Run("grpcurl", func(t *testing.T) { grpcurl(t, tr) })
	t.Run("server-log", func(t *testing.T) { serverLog(t, tr) })
}

// requireTools fails, with what to do, when a tool the tier needs is
// missing: the tier never skips.
func requireTools(t *testing.T) {
	t.Helper()
	root := testtool.RepoRoot(t)
	missing := []string{}
	for _, f := range []string{python, protoc, pythonPlugin} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	nm := filepath.Join(root, "test", "interop", "node", "node_modules", "@connectrpc", "connect-node")
	if _, err := os.Stat(nm); err != nil {
		missing = append(missing, nm)
	}
	if len(missing) > 0 {
		t.Fatalf("interop: missing %s: run `make test-interop`, which installs them (apt-get install python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc nodejs npm; npm ci in test/interop/node)",
			strings.Join(missing, ", "))
	}
	out, err := exec.Command(python, "-c", "import grpc, google.protobuf; print(grpc.__version__, google.protobuf.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("interop: %s cannot import grpc and google.protobuf (install python3-grpcio python3-protobuf): %v\n%s", python, err, out)
	}
	t.Logf("grpcio, protobuf (python): %s", strings.TrimSpace(string(out)))
}

func startTier(t *testing.T) *tier {
	t.Helper()
	root := testtool.RepoRoot(t)
	dir := t.TempDir()
	certDir, otherCA := filepath.Join(dir, "certs"), filepath.Join(dir, "other-ca")
	for _, d := range []string{certDir, otherCA} {
		if _, err := sample.InitCerts(d, certs.InitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tokens.InitDev(certDir, false); err != nil {
		t.Fatal(err)
	}

	log := &testsync.Buffer{}
	addrs := map[string]string{}
	for _, s := range shop.Services {
		addrs[s] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := shop.Start(ctx, shop.Config{
		CertDir: certDir, Addrs: addrs, StepInterval: 50 * time.Millisecond,
		PolicyFile: filepath.Join(root, "services", "policy.yaml"),
		Log:        slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := m.Wait(); err != nil {
			t.Errorf("mesh stopped with: %v", err)
		}
		if t.Failed() {
			t.Logf("mesh log:\n%s", log.String())
		}
	})

	ports := map[string]string{}
	for _, s := range shop.Services {
		_, port, _ := net.SplitHostPort(m.Addrs[s])
		ports[s] = "localhost:" + port // a DNS SAN of every workload SVID
	}
	cfg := config{
		DescriptorSet: filepath.Join(dir, "set.binpb"),
		Ports:         ports,
		Down:          downAddr(t),
		CA:            filepath.Join(certDir, certs.BundleFile),
		Alice:         pair(certDir, "alice"),
		Admin:         pair(certDir, "admin"),
		Stranger:      pair(otherCA, "alice"),
		Token:         aliceToken(t, certDir),
		DeadlineMS:    deadline.Milliseconds(),
		BigIDBytes:    bigIDBytes,
	}
	writeDescriptorSet(t, cfg.DescriptorSet)
	tr := &tier{cfg: cfg, cfgFile: filepath.Join(dir, "config.json"), pyOut: filepath.Join(dir, "py"), log: log, root: root}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tr.cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	generatePython(t, cfg.DescriptorSet, tr.pyOut)
	return tr
}

// downAddr returns a loopback address that nothing listens on: a service
// that is down, to tell apart from a refused certificate.
func downAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "localhost:" + port
}

// aliceToken mints what `meshctl tokens issue --cert alice.pem` does: an
// access token for the gateway, bound to alice's certificate.
func aliceToken(t *testing.T, dir string) string {
	t.Helper()
	iss, err := tokens.NewIssuer(tokens.DevIssuer, filepath.Join(dir, tokens.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "alice.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("interop: alice.pem holds no PEM block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(leaf, shop.WorkloadID(shop.Gateway).String(), 15*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// healthFile is the name the health proto gets in the descriptor set.
// grpcio's own health package is grpc_health.v1 (grpcio-health-checking):
// code generated as grpc/health/v1 would shadow the grpc package itself.
// The file name is not on the wire; the package and service names stay.
const healthFile = "grpc_health/v1/health.proto"

// writeDescriptorSet writes the descriptors of the services the clients
// call, with everything they import, dependencies first: exactly what the
// servers were built from (gen/, which `make test` checks is fresh).
func writeDescriptorSet(t *testing.T, path string) {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		if fdp.GetName() == "grpc/health/v1/health.proto" {
			fdp.Name = proto.String(healthFile)
		}
		set.File = append(set.File, fdp)
	}
	for _, fd := range []protoreflect.FileDescriptor{
		gatewayv1.File_shop_gateway_v1_gateway_proto,
		gatewayv2.File_shop_gateway_v2_gateway_proto,
		paymentsv1.File_shop_payments_v1_payments_proto,
		healthpb.File_grpc_health_v1_health_proto,
	} {
		add(fd)
	}
	data, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// generatePython generates the Python messages and grpcio stubs with
// Debian's protoc and grpc_python_plugin (they match python3-protobuf and
// python3-grpcio), from the descriptor set, into out. google/protobuf's
// own files come with python3-protobuf.
func generatePython(t *testing.T, set, out string) {
	t.Helper()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &fds); err != nil {
		t.Fatal(err)
	}
	args := []string{"--descriptor_set_in=" + set, "--python_out=" + out, "--grpc_python_out=" + out,
		"--plugin=protoc-gen-grpc_python=" + pythonPlugin}
	for _, f := range fds.File {
		if !strings.HasPrefix(f.GetName(), "google/protobuf/") {
			args = append(args, f.GetName())
		}
	}
	if out, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("interop: %s %s: %v\n%s", protoc, strings.Join(args, " "), err, out)
	}
}

// run runs a client script and returns its results by case, and what it
// wrote to stderr; the script failing (rather than a call failing, which it
// reports) fails the test.
func run(t *testing.T, env []string, name string, args ...string) (map[string]result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %s", filepath.Base(name), filepath.Base(args[0]), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("interop: %s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", stderr.String())
	}
	res := map[string]result{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("interop: %s printed a line that is not a result (%v): %q", filepath.Base(args[0]), err, sc.Text())
		}
		if _, dup := res[r.Case]; dup {
			t.Fatalf("interop: %s reported case %s twice", filepath.Base(args[0]), r.Case)
		}
		res[r.Case] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return res, stderr.String()
}

// expectation is what one call must end with: one of codes, a message
// that contains one of phrases (any message when there are none) and none
// of notPhrases, and what else its data must show.
type expectation struct {
	codes      []string
	phrases    []string
	notPhrases []string
	data       func(r result) error
}

func ok(data func(r result) error) expectation { return expectation{codes: []string{"OK"}, data: data} }

func fails(code, phrase string) expectation {
	return expectation{codes: []string{code}, phrases: []string{phrase}}
}

// refused is a refused handshake: a client's TLS stack sees the server's
// alert or, when the server's close wins the race with the client's first
// write (TLS 1.3 clients finish their side of the handshake before the
// server has checked their certificate), a reset or broken pipe. Whichever
// it sees, it must not look like a service that is down.
func refused(codes []string, phrases ...string) expectation {
	return expectation{codes: codes, phrases: phrases, notPhrases: []string{"ECONNREFUSED", "Connection refused", "deadline"}}
}

func (w expectation) matches(r result) error {
	if !slices.Contains(w.codes, r.Code) {
		return fmt.Errorf("code %s (%q), want %s", r.Code, clip(r.Message), strings.Join(w.codes, " or "))
	}
	if len(w.phrases) > 0 && !slices.ContainsFunc(w.phrases, func(p string) bool { return strings.Contains(r.Message, p) }) {
		return fmt.Errorf("message %q, want it to contain %q", clip(r.Message), strings.Join(w.phrases, `" or "`))
	}
	for _, p := range w.notPhrases {
		if strings.Contains(r.Message, p) {
			return fmt.Errorf("message %q contains %q", clip(r.Message), p)
		}
	}
	if w.data != nil {
		return w.data(r)
	}
	return nil
}

// The expectations shared by every client, by case.
var common = map[string]expectation{
	"list_products": ok(func(r result) error {
		if n, _ := r.Data["products"].(float64); n < 1 {
			return fmt.Errorf("%v products, want some", r.Data["products"])
		}
		return nil
	}),
	"place_order":       ok(status("ORDER_STATUS_CONFIRMED")),
	"watch_order":       ok(streamEndsDelivered),
	"token_place_order": ok(status("ORDER_STATUS_CONFIRMED")),
	"no_token_place_order": fails("UNAUTHENTICATED",
		"token required for /shop.gateway.v2.StorefrontService/PlaceOrder"),
	"denied_charge": fails("PERMISSION_DENIED",
		"spiffe://shop.example/user/alice may not call /shop.payments.v1.PaymentService/Charge"),
	// Named by the field; the wording is the validator's.
	"oversized_get_order":   fails("INVALID_ARGUMENT", "order_id"),
	"oversized_place_order": fails("INVALID_ARGUMENT", "customer_id"),
	"oversized_watch_order": fails("INVALID_ARGUMENT", "order_id"),
	"health_gateway":        ok(serving),
	"health_orders":         ok(serving),
	"health_inventory":      ok(serving),
	"health_payments":       ok(serving),
}

func status(want string) func(r result) error {
	return func(r result) error {
		if got := r.Data["status"]; got != want {
			return fmt.Errorf("status %v, want %s", got, want)
		}
		return nil
	}
}

func serving(r result) error {
	if got := r.Data["status"]; got != "SERVING" {
		return fmt.Errorf("health status %v, want SERVING", got)
	}
	return nil
}

func streamEndsDelivered(r result) error {
	list, _ := r.Data["statuses"].([]any)
	if len(list) < 2 || list[len(list)-1] != "ORDER_STATUS_DELIVERED" {
		return fmt.Errorf("stream statuses %v, want several ending ORDER_STATUS_DELIVERED", list)
	}
	return nil
}

// refusals are what a client says when the handshake is refused, or the
// service is down: the code and a key phrase, per client.
type refusals struct{ noCert, otherCA, noCertGRPCGo, otherCAGRPCGo, down expectation }

func (rf refusals) add(m map[string]expectation, prefix string) {
	m[prefix+"refused_no_cert"] = rf.noCert
	m[prefix+"refused_other_ca"] = rf.otherCA
	m[prefix+"refused_no_cert_grpcgo"] = rf.noCertGRPCGo
	m[prefix+"refused_other_ca_grpcgo"] = rf.otherCAGRPCGo
	m[prefix+"down"] = rf.down
}

func withCommon(prefix string, rf refusals, only ...string) map[string]expectation {
	m := map[string]expectation{}
	for k, v := range common {
		if len(only) == 0 || slices.Contains(only, k) {
			m[prefix+k] = v
		}
	}
	rf.add(m, prefix)
	return m
}

// The phrases of a refused handshake. The alerts are the server's: Go's
// crypto/tls sends certificate_required when no certificate came, and
// bad_certificate when VerifyConnection refused the one that did.
const (
	alertNoCert  = "alert certificate required"
	alertBadCert = "alert bad certificate"
)

var (
	// grpcio says only that the connection broke; its C core logs the
	// alert to stderr (checked in TestInterop).
	grpcioRefused = refused([]string{"UNAVAILABLE"}, "Endpoint read failed", "Connection reset by peer", "Socket closed")
	grpcioWant    = withCommon("", refusals{
		noCert:        grpcioRefused,
		otherCA:       grpcioRefused,
		noCertGRPCGo:  grpcioRefused,
		otherCAGRPCGo: grpcioRefused,
		down:          fails("UNAVAILABLE", "Failed to connect to remote host: Connection refused"),
	})
	grpcjsWant = withCommon("", refusals{
		noCert:        refused([]string{"UNAVAILABLE"}, alertNoCert, "ECONNRESET", "EPIPE"),
		otherCA:       refused([]string{"UNAVAILABLE"}, alertBadCert, "ECONNRESET", "EPIPE"),
		noCertGRPCGo:  refused([]string{"UNAVAILABLE"}, alertNoCert, "ECONNRESET", "EPIPE"),
		otherCAGRPCGo: refused([]string{"UNAVAILABLE"}, alertBadCert, "ECONNRESET", "EPIPE"),
		down:          fails("UNAVAILABLE", "connect ECONNREFUSED"),
	})
	connectWant = connectExpectations()
)

// connectExpectations: connect-node calls everything over gRPC (HTTP/2),
// and what the connect-go servers (gateway, payments) serve over the
// Connect protocol and gRPC-Web, both on HTTP/1.1. It reports the TLS
// stack's error as Internal (Aborted for a reset), not Unavailable.
func connectExpectations() map[string]expectation {
	codes := []string{"INTERNAL", "ABORTED", "UNAVAILABLE"}
	rf := refusals{
		noCert:        refused(codes, alertNoCert, "ECONNRESET", "EPIPE"),
		otherCA:       refused(codes, alertBadCert, "ECONNRESET", "EPIPE"),
		noCertGRPCGo:  refused(codes, alertNoCert, "ECONNRESET", "EPIPE"),
		otherCAGRPCGo: refused(codes, alertBadCert, "ECONNRESET", "EPIPE"),
		down:          fails("UNAVAILABLE", "connect ECONNREFUSED"),
	}
	m := withCommon("grpc/", rf)
	connectGo := []string{"list_products", "place_order", "watch_order", "token_place_order", "no_token_place_order",
		"denied_charge", "oversized_get_order", "oversized_place_order", "oversized_watch_order", "health_gateway", "health_payments"}
	for _, p := range []string{"connect-h1/", "grpcweb-h1/"} {
		for k, v := range withCommon(p, rf, connectGo...) {
			if strings.HasSuffix(k, "_grpcgo") { // grpc-go serves gRPC only
				continue
			}
			m[k] = v
		}
	}
	return m
}

// check compares a client's results with the expectations: every case
// expected must be there and as expected, and no other.
func check(t *testing.T, client string, got map[string]result, want map[string]expectation) {
	t.Helper()
	var names []string
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w := want[name]
		r, ok := got[name]
		if !ok {
			t.Errorf("%s: case %s: not reported", client, name)
			continue
		}
		if err := w.matches(r); err != nil {
			t.Errorf("%s: %s: %v", client, name, err)
		}
		if strings.HasPrefix(strings.TrimPrefix(name, prefixOf(name)), "oversized_") {
			// Promptly: a call stalled by the answer would end at its
			// deadline instead (DeadlineExceeded, caught above), or late.
			if r.MS > float64(deadline.Milliseconds())/4 {
				t.Errorf("%s: %s: took %.0f ms, want well under the %s deadline", client, name, r.MS, deadline)
			}
			// Nothing a caller sends comes back unbounded.
			if len(r.Message) > 1024 {
				t.Errorf("%s: %s: the error message has %d bytes: it echoes the request", client, name, len(r.Message))
			}
		}
		if r.Code != "OK" {
			t.Logf("%-40s %-18s %6.0f ms  %s", name, r.Code, r.MS, clip(r.Message))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: reported case %s, which the test does not expect", client, name)
		}
	}
}

func prefixOf(name string) string {
	if i := strings.Index(name, "/"); i >= 0 {
		return name[:i+1]
	}
	return ""
}

// clip bounds what a test prints of a message.
func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// grpcurl: the refused handshakes, and a service that is down, as grpcurl
// reports them.
func grpcurl(t *testing.T, tr *tier) {
	bin := testtool.Path(t, "grpcurl")
	ca := []string{"-cacert", tr.cfg.CA}
	cases := []struct {
		name, target, phrase string
		flags                []string
	}{
		{"refused_no_cert", tr.cfg.Ports[shop.Gateway], "remote error: tls: certificate required", nil},
		{"refused_other_ca", tr.cfg.Ports[shop.Gateway], "remote error: tls: bad certificate",
			[]string{"-cert", tr.cfg.Stranger.Cert, "-key", tr.cfg.Stranger.Key}},
		{"refused_no_cert_grpcgo", tr.cfg.Ports[shop.Orders], "remote error: tls: certificate required", nil},
		{"refused_other_ca_grpcgo", tr.cfg.Ports[shop.Orders], "remote error: tls: bad certificate",
			[]string{"-cert", tr.cfg.Stranger.Cert, "-key", tr.cfg.Stranger.Key}},
		// grpcurl retries a refused TCP connection until -connect-timeout
		// (10 s by default) and then says only this.
		{"down", tr.cfg.Down, "context deadline exceeded",
			[]string{"-cert", tr.cfg.Alice.Cert, "-key", tr.cfg.Alice.Key, "-connect-timeout", "2"}},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := slices.Concat(ca, c.flags, []string{c.target, "grpc.health.v1.Health/Check"})
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.phrase) {
			t.Errorf("grpcurl %s: %v: %q, want a failure containing %q", c.name, err, out, c.phrase)
			continue
		}
		t.Logf("%-40s %s", c.name, strings.TrimSpace(string(out)))
	}
}

var (
	timeRE = regexp.MustCompile(`^time=\S+ `)
	addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)
)

// serverLog: each refused handshake is one line in the server's log, which
// says why; connect-go servers (gateway, payments) log it through
// net/http, grpc-go servers (orders, inventory) through the mesh.
func serverLog(t *testing.T, tr *tier) {
	log := tr.log.String()
	for _, want := range []string{
		`msg="http: TLS handshake error from 127.0.0.1:`,
		`: tls: client didn't provide a certificate" service=gateway`,
		`: identity: client certificate \"spiffe://shop.example/user/alice\": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`,
		`msg="mesh: refused connection: TLS handshake failed" service=orders remote=127.0.0.1:`,
		`error="tls: client didn't provide a certificate"`,
		`error="identity: client certificate \"spiffe://shop.example/user/alice\": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("server log has no %q", want)
		}
	}
	// One line of each kind, for README.md.
	seen := map[string]bool{}
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "TLS handshake") {
			continue
		}
		kind := addrRE.ReplaceAllString(timeRE.ReplaceAllString(strings.TrimSpace(line), ""), "127.0.0.1:PORT")
		if !seen[kind] {
			seen[kind] = true
			t.Logf("%s", clip(kind))
		}
	}
	// Nothing a caller sends goes to a log unbounded: the 200 KB IDs.
	if strings.Contains(log, strings.Repeat("a", 1024)) {
		t.Errorf("server log holds a caller's oversized ID")
	}
}
