//go:build spire

// The SPIRE integration tier: the sample mesh on identities from a real
// SPIRE v1.13.3 server and agent, run as local processes. Run it with `make
// test-spire`, which builds SPIRE first (`make spire`) and passes
// TRUSTMESH_SPIRE_BIN; without the binaries the test fails, it never skips.

package shopmesh_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v2/gatewayv2connect"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/spire"
	"github.com/trustmesh/trustmesh/internal/spire/shopmesh"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

// bob is the test process's own identity (unix:path of this test binary):
// a person other than alice, so policy decisions by SPIFFE ID show.
var bob = spiffeid.RequireFromString("spiffe://shop.example/user/bob")

func TestSPIRE(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("SPIRE tier wall time: %s", time.Since(start).Round(time.Second)) }()

	binDir := os.Getenv("TRUSTMESH_SPIRE_BIN")
	if binDir == "" {
		t.Fatal("TRUSTMESH_SPIRE_BIN is not set: run `make test-spire`, which builds spire-server and spire-agent first")
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			t.Fatalf("SPIRE binary missing (run `make spire`): %v", err)
		}
	}
	root := testtool.RepoRoot(t)
	grpcurl := testtool.Path(t, "grpcurl")

	// A short directory: the agent's socket lives in it.
	work, err := os.MkdirTemp("", "tm-spire-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(work) })
	shopBin := filepath.Join(work, "shop")
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", shopBin, "./cmd/shop") // as make build
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/shop: %v\n%s", err, out)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	addrs := map[string]string{}
	for _, name := range shop.Services {
		addrs[name] = freeAddr(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	upStart := time.Now()
	r, err := shopmesh.Up(ctx, shopmesh.UpConfig{
		SPIRE: spire.Config{
			BinDir:    binDir,
			ConfigDir: filepath.Join(root, "deploy", "spire"),
			StateDir:  filepath.Join(work, "state"),
			// The test process is bob: this binary, this user. A long TTL:
			// the client is not what rotates here.
			Entries: []spire.Entry{{ID: bob, Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid()), "unix:path:" + exe}, X509TTL: time.Hour}},
		},
		Shop: shopBin,
		Mesh: shopmesh.MeshConfig{
			Addrs:  addrs,
			Args:   []string{"--policy", filepath.Join(root, "services", "policy.yaml"), "--step-interval", "1s"},
			Env:    []string{"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none"},
			Output: logs,
		},
	})
	if err != nil {
		t.Fatalf("shopmesh.Up: %v", err)
	}
	t.Logf("SPIRE server, agent and four services up in %s (state %s)", time.Since(upStart).Round(time.Millisecond), work)
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("services' logs:\n%s", logs.String())
			for _, f := range []string{r.SPIRE.ServerLog(), r.SPIRE.AgentLog()} {
				data, _ := os.ReadFile(f)
				t.Logf("%s (tail):\n%s", f, tail(string(data), 40))
			}
		}
	})

	gw := "localhost:" + port(addrs[shop.Gateway])
	alice := []string{"-cacert", filepath.Join(r.UserDir, "bundle.0.pem"),
		"-cert", filepath.Join(r.UserDir, "svid.0.pem"), "-key", filepath.Join(r.UserDir, "svid.0.key")}

	// bob's live identity, from the agent, through the same source the
	// services use.
	bobSrc, err := certs.NewWorkloadSource(ctx, r.SPIRE.AgentAddr(), nil, certs.WithSVIDID(bob), certs.WithStartTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("bob's SVID: %v", err)
	}
	t.Cleanup(func() { _ = bobSrc.Close() })
	bobCreds := mesh.Credentials{SVID: bobSrc, Bundles: bobSrc}

	t.Run("PlaceOrderThroughAllFour", func(t *testing.T) {
		out, err := run(grpcurl, append(alice, gw, "list")...)
		if err != nil || !strings.Contains(out, "shop.gateway.v1.StorefrontService") {
			t.Fatalf("grpcurl list as alice: %v\n%s", err, out)
		}
		out, err = run(grpcurl, append(alice, "-d", `{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":2}]}`,
			gw, "shop.gateway.v1.StorefrontService/PlaceOrder")...)
		if err != nil {
			t.Fatalf("grpcurl PlaceOrder as alice: %v\n%s", err, out)
		}
		var placed struct {
			Order struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"order"`
		}
		if err := json.Unmarshal([]byte(out), &placed); err != nil || placed.Order.ID == "" || placed.Order.Status != "ORDER_STATUS_CONFIRMED" {
			t.Fatalf("PlaceOrder: want a CONFIRMED order (%v):\n%s", err, out)
		}
		// Every service presents the SVID SPIRE issued for its entry.
		for _, name := range shop.Services {
			leaf := handshake(t, bobCreds, addrs[name], shop.WorkloadID(name))
			if got := leaf.URIs[0].String(); got != shop.WorkloadID(name).String() {
				t.Errorf("%s presents %s", name, got)
			}
		}
	})

	t.Run("PolicyDecidesBySPIFFEID", func(t *testing.T) {
		// alice may use storefront v2; bob (another user/* ID) may not, but
		// may use v1; neither person may call orders directly.
		out, err := run(grpcurl, append(alice, gw, "shop.gateway.v2.StorefrontService/ListProducts")...)
		if err != nil {
			t.Errorf("alice v2 ListProducts: %v\n%s", err, out)
		}
		hc, err := mesh.NewHTTPClient(bobCreds, shop.WorkloadID(shop.Gateway))
		if err != nil {
			t.Fatal(err)
		}
		defer hc.CloseIdleConnections()
		v1 := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addrs[shop.Gateway], connect.WithGRPC())
		v2 := gatewayv2connect.NewStorefrontServiceClient(hc, "https://"+addrs[shop.Gateway], connect.WithGRPC())
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := v1.ListProducts(cctx, connect.NewRequest(&gatewayv1.ListProductsRequest{})); err != nil {
			t.Errorf("bob v1 ListProducts: %v, want allowed", err)
		}
		if _, err := v2.ListProducts(cctx, connect.NewRequest(&gatewayv2.ListProductsRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("bob v2 ListProducts: %v, want permission_denied", err)
		}
		conn, err := mesh.DialGRPC(addrs[shop.Orders], bobCreds, shop.WorkloadID(shop.Orders))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		_, err = ordersv1.NewOrderServiceClient(conn).GetOrder(cctx, &ordersv1.GetOrderRequest{OrderId: "x"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("bob orders.GetOrder: %v, want PermissionDenied", err)
		}
		if !logs.contains(`spiffe://shop.example/user/bob`) {
			t.Errorf("no service logged bob's denied calls")
		}
	})

	// A workload without an entry: the same shop binary under another
	// path, and spire-agent under another path. Neither gets an SVID.
	nobody := filepath.Join(work, "nobody")
	if err := os.MkdirAll(nobody, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two `shop serve` processes that cannot get an SVID, run alongside
	// the rest (each gives up after its 30s start timeout): one from an
	// unregistered path, one pointed at a socket where no agent listens.
	// Each must fail with one line naming the socket and what to check.
	noEntry := make(chan error, 2)
	bin := filepath.Join(nobody, "shop-gateway")
	if err := copyFile(shopBin, bin); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, socket, want string }{
		{"without an entry", r.SPIRE.AgentAddr(), "no identity issued"},
		{"without an agent", "unix://" + filepath.Join(nobody, "no-agent.sock"), "is the agent running"},
	} {
		go func() {
			cmd := exec.Command(bin, "serve", "gateway", "--listen", "127.0.0.1:0", "--policy", filepath.Join(root, "services", "policy.yaml"))
			cmd.Env = append(os.Environ(), certs.EndpointSocketEnv+"="+c.socket, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
			out, err := cmd.CombinedOutput()
			last := strings.TrimSpace(tail(string(out), 1))
			switch {
			case err == nil:
				noEntry <- fmt.Errorf("shop serve %s exited cleanly:\n%s", c.what, out)
			case !strings.Contains(last, c.socket) || !strings.Contains(last, c.want) || !strings.Contains(last, "registration entry"):
				noEntry <- fmt.Errorf("shop serve %s: last line %q does not name the socket and %q:\n%s", c.what, last, c.want, out)
			default:
				t.Logf("workload %s: %s", c.what, last)
				noEntry <- nil
			}
		}()
	}
	t.Run("NoEntryNoSVID", func(t *testing.T) {
		agent := filepath.Join(nobody, "spire-agent")
		if err := copyFile(r.SPIRE.AgentBinary(), agent); err != nil {
			t.Fatal(err)
		}
		out, err := run(agent, append(spire.FetchArgs(r.SPIRE.AgentSocket(), filepath.Join(nobody, "svid")), "-timeout", "3s")...)
		if err == nil {
			t.Fatalf("spire-agent api fetch from an unregistered path got an SVID:\n%s", out)
		}
		t.Logf("fetch without an entry: %s", strings.TrimSpace(out))
		if _, err := os.Stat(filepath.Join(nobody, "svid", "svid.0.pem")); err == nil {
			t.Errorf("an SVID was written for an unregistered workload")
		}
		// Nothing to present: the mesh refuses the handshake.
		out, err = run(grpcurl, "-cacert", filepath.Join(r.UserDir, "bundle.0.pem"), gw, "list")
		if err == nil || !strings.Contains(out, "certificate required") {
			t.Errorf("grpcurl without a client certificate: %v, want a refused handshake:\n%s", err, out)
		}
	})

	// Traffic from bob for the rest of the test: ListProducts through
	// gateway -> inventory, a PlaceOrder through all four every two
	// seconds, a new connection (so a new handshake) every tenth call.
	tr := startTraffic(ctx, t, bobCreds, addrs[shop.Gateway])

	t.Run("RotationUnderTraffic", func(t *testing.T) {
		first := handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway))
		mark := logs.len()
		deadline := time.Now().Add(first.NotAfter.Sub(first.NotBefore) + 30*time.Second)
		for _, name := range shop.Services {
			waitLog(t, logs, mark, deadline, "certs: rotated SVID from the Workload API", "service="+name)
		}
		leaf := handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway))
		if leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatalf("gateway still presents serial %x after its rotation was logged", first.SerialNumber)
		}
		if !logs.containsAll(mark, "service=gateway", "serial="+leaf.SerialNumber.Text(16)) {
			t.Errorf("the gateway presents serial %x, which it did not log as rotated", leaf.SerialNumber)
		}
		// The loop makes a new connection every tenth call: wait for the
		// next one to present the new serial too.
		for _, _, n := tr.stats(); n < 2; _, _, n = tr.stats() {
			if time.Now().After(deadline.Add(15 * time.Second)) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		ok, failed, serials := tr.stats()
		t.Logf("rotation: gateway serial %x -> %x; %d calls, %d failed; %d gateway serials seen in new handshakes", first.SerialNumber, leaf.SerialNumber, ok, failed, serials)
		if failed != 0 {
			t.Errorf("%d calls failed across the rotation; first: %v", failed, tr.firstError())
		}
		if serials < 2 {
			t.Errorf("new handshakes saw %d gateway serials, want the old and the new", serials)
		}
	})

	t.Run("ServerDownThenBack", func(t *testing.T) {
		// Stop the server shortly before the agent's next rotation (at about
		// half the SVIDs' lifetime), so the outage is as short as a useful
		// one can be: the agent retries the server with a growing backoff.
		cur := handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway))
		life := cur.NotAfter.Sub(cur.NotBefore)
		if d := time.Until(cur.NotBefore.Add(life * 4 / 10)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		cur = handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway))
		okBefore, _, _ := tr.stats()
		mark := logs.len()
		if err := r.SPIRE.StopServer(); err != nil {
			t.Fatalf("stop server: %v", err)
		}
		stopped := time.Now()
		t.Logf("SPIRE server stopped; gateway SVID %x valid until %s", cur.SerialNumber, cur.NotAfter.Format(time.TimeOnly))
		// The services keep serving with their SVIDs and warn as expiry nears.
		for _, name := range shop.Services {
			waitLog(t, logs, mark, cur.NotAfter, "certs: SVID expires soon", "service="+name)
		}
		ok, failed, _ := tr.stats()
		t.Logf("server down %s: %d calls, %d failed; every service warned its SVID expires soon", time.Since(stopped).Round(time.Second), ok-okBefore, failed)
		if failed != 0 {
			t.Errorf("%d calls failed while the server was down and the SVIDs valid; first: %v", failed, tr.firstError())
		}
		if err := r.SPIRE.StartServer(ctx); err != nil {
			t.Fatalf("restart server: %v", err)
		}
		restarted := time.Now()
		mark = logs.len()
		// The agent reaches the server again at its next retry (its backoff
		// grows to minutes) and rotates every SVID.
		for _, name := range shop.Services {
			waitLog(t, logs, mark, restarted.Add(3*time.Minute), "certs: rotated SVID from the Workload API", "service="+name)
		}
		t.Logf("server back: every service rotated within %s", time.Since(restarted).Round(time.Second))
		leaf := handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway))
		if leaf.SerialNumber.Cmp(cur.SerialNumber) == 0 {
			t.Errorf("gateway still presents serial %x after the server came back", cur.SerialNumber)
		}
		// Calls that failed between the old SVIDs' expiry and the agent's
		// next retry are SPIRE's backoff, not the mesh: report them.
		before, after := tr.failuresAround(cur.NotAfter)
		if before != 0 {
			t.Errorf("%d calls failed while the SVIDs were valid; first: %v", before, tr.firstError())
		}
		if after != 0 {
			t.Logf("%d calls failed after the pre-outage SVIDs expired (%s) and before the agent reached the server again", after, cur.NotAfter.Format(time.TimeOnly))
		}
	})

	ok, failed, serials := tr.stop()
	t.Logf("traffic: %d calls, %d failed, %d gateway serials seen", ok, failed, serials)

	// A JWT-SVID from the real agent, validated by trustmesh's strict
	// validator against the real server's bundle (SPIFFE format).
	t.Run("JWTSVIDFromTheAgent", func(t *testing.T) {
		audience := shop.WorkloadID(shop.Gateway).String()
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		defer fcancel()
		svid, err := bobSrc.FetchJWTSVID(fctx, audience)
		if err != nil {
			t.Fatalf("FetchJWTSVID: %v", err)
		}
		data, err := r.SPIRE.BundleJSON(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := identity.ParseBundle(r.SPIRE.TrustDomain(), data)
		if err != nil {
			t.Fatalf("the server's bundle: %v", err)
		}
		got, err := identity.VerifyJWTSVID(svid.Marshal(), bundle, audience, time.Time{})
		if err != nil {
			t.Fatalf("VerifyJWTSVID against the server's bundle: %v", err)
		}
		if got.ID != bob {
			t.Errorf("JWT-SVID for %s, want %s", got.ID, bob)
		}
		if _, err := identity.VerifyJWTSVID(svid.Marshal(), bundle, "spiffe://shop.example/ns/shop/sa/orders", time.Time{}); err == nil {
			t.Error("a JWT-SVID for the gateway verified for another audience")
		}
	})

	// The agent withdraws bob's identity when his registration entry is
	// deleted (its stream answers PermissionDenied): the source stops
	// presenting the SVID, and presents one again once the entry is back.
	t.Run("WithdrawnAndReissued", func(t *testing.T) {
		waitServing := func(want bool) {
			t.Helper()
			deadline := time.Now().Add(90 * time.Second)
			for bobSrc.Serving() != want {
				if time.Now().After(deadline) {
					t.Fatalf("bob's source Serving() = %v after 90s, want %v", !want, want)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		n, err := r.SPIRE.DeleteEntries(ctx, bob)
		if err != nil || n == 0 {
			t.Fatalf("delete bob's entries: %d, %v", n, err)
		}
		waitServing(false)
		if _, err := bobSrc.GetX509SVID(); !errors.Is(err, certs.ErrWithdrawn) {
			t.Errorf("GetX509SVID while withdrawn: %v, want certs.ErrWithdrawn", err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		if _, err := dialLeaf(dctx, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway)); err == nil {
			t.Error("a handshake as bob succeeded while his identity was withdrawn")
		}
		if err := r.SPIRE.CreateEntry(ctx, spire.Entry{ID: bob, Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid()), "unix:path:" + exe}, X509TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		waitServing(true)
		if leaf := handshake(t, bobCreds, addrs[shop.Gateway], shop.WorkloadID(shop.Gateway)); leaf == nil {
			t.Error("no handshake as bob after his entry came back")
		}
	})

	for range 2 {
		if err := <-noEntry; err != nil {
			t.Errorf("NoEntryNoSVID: %v", err)
		}
	}
	select {
	case err := <-r.Mesh.Done():
		t.Errorf("a service exited during the test: %v", err)
	default:
	}
}

// traffic is bob's client loop.
type traffic struct {
	cancel  context.CancelFunc
	done    chan struct{}
	ok      atomic.Int64
	mu      sync.Mutex
	fails   []failure
	serials map[string]bool
}

type failure struct {
	at  time.Time
	err error
}

func startTraffic(ctx context.Context, t *testing.T, creds mesh.Credentials, gateway string) *traffic {
	ctx, cancel := context.WithCancel(ctx)
	tr := &traffic{cancel: cancel, done: make(chan struct{}), serials: map[string]bool{}}
	t.Cleanup(func() { tr.stop() })
	go func() {
		defer close(tr.done)
		var hc interface{ CloseIdleConnections() }
		var client gatewayv1connect.StorefrontServiceClient
		lastOrder := time.Time{}
		orders := 0
		for i := 0; ctx.Err() == nil; i++ {
			if i%10 == 0 {
				if hc != nil {
					hc.CloseIdleConnections()
				}
				c, err := mesh.NewHTTPClient(creds, shop.WorkloadID(shop.Gateway))
				if err != nil {
					tr.fail(err)
					return
				}
				hc, client = c, gatewayv1connect.NewStorefrontServiceClient(c, "https://"+gateway, connect.WithGRPC())
				if leaf, err := dialLeaf(ctx, creds, gateway, shop.WorkloadID(shop.Gateway)); err == nil {
					tr.mu.Lock()
					tr.serials[leaf.SerialNumber.Text(16)] = true
					tr.mu.Unlock()
				} else if ctx.Err() == nil {
					tr.fail(fmt.Errorf("handshake: %w", err))
				}
			}
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if time.Since(lastOrder) > 2*time.Second && orders < 100 {
				lastOrder = time.Now()
				orders++
				product := []string{"sku-apple", "sku-pear"}[orders%2]
				var res *connect.Response[gatewayv1.PlaceOrderResponse]
				res, err = client.PlaceOrder(cctx, connect.NewRequest(&gatewayv1.PlaceOrderRequest{CustomerId: "bob",
					Items: []*gatewayv1.CartItem{{ProductId: product, Quantity: 1}}}))
				if err == nil && res.Msg.GetOrder().GetStatus() != gatewayv1.OrderStatus_ORDER_STATUS_CONFIRMED {
					err = fmt.Errorf("PlaceOrder: status %s", res.Msg.GetOrder().GetStatus())
				}
			} else {
				_, err = client.ListProducts(cctx, connect.NewRequest(&gatewayv1.ListProductsRequest{}))
			}
			ccancel()
			switch {
			case err == nil:
				tr.ok.Add(1)
			case ctx.Err() != nil:
			default:
				tr.fail(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		if hc != nil {
			hc.CloseIdleConnections()
		}
	}()
	return tr
}

func (tr *traffic) fail(err error) {
	tr.mu.Lock()
	tr.fails = append(tr.fails, failure{time.Now(), err})
	tr.mu.Unlock()
}

func (tr *traffic) stats() (ok, failed int64, serials int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok.Load(), int64(len(tr.fails)), len(tr.serials)
}

func (tr *traffic) firstError() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.fails) == 0 {
		return nil
	}
	f := tr.fails[0]
	return fmt.Errorf("at %s: %w", f.at.Format(time.TimeOnly), f.err)
}

// failuresAround counts the failures before and after t.
func (tr *traffic) failuresAround(t time.Time) (before, after int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, f := range tr.fails {
		if f.at.Before(t) {
			before++
		} else {
			after++
		}
	}
	return before, after
}

func (tr *traffic) stop() (ok, failed int64, serials int) {
	tr.cancel()
	<-tr.done
	return tr.stats()
}

// handshake returns the leaf that the server at addr presents in a new
// TLS handshake, which must carry the SPIFFE ID want.
func handshake(t *testing.T, creds mesh.Credentials, addr string, want spiffeid.ID) *x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leaf, err := dialLeaf(ctx, creds, addr, want)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	return leaf
}

func dialLeaf(ctx context.Context, creds mesh.Credentials, addr string, want spiffeid.ID) (*x509.Certificate, error) {
	cfg := tlsconfig.MTLSClientConfig(creds.SVID, creds.Bundles, tlsconfig.AuthorizeID(want))
	cfg.NextProtos = []string{"h2"} // grpc-go servers refuse a handshake without ALPN
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// logBuffer collects the services' output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *logBuffer) contains(s string) bool { return strings.Contains(b.String(), s) }

// containsAll reports whether one line after offset from contains every
// part.
func (b *logBuffer) containsAll(from int, parts ...string) bool {
	b.mu.Lock()
	text := b.buf.String()[from:]
	b.mu.Unlock()
lines:
	for _, line := range strings.Split(text, "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return true
	}
	return false
}

// waitLog waits until a line after offset from contains every part, failing
// the test at deadline.
func waitLog(t *testing.T, b *logBuffer, from int, deadline time.Time, parts ...string) {
	t.Helper()
	for !b.containsAll(from, parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q by %s", parts, deadline.Format(time.TimeOnly))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func run(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
