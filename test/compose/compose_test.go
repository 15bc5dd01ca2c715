//go:build compose

package compose

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// project is the compose project name of the test, apart from a developer's
// `make up` (project trustmesh).
const project = "trustmesh-composetest"

// stack drives one compose project from the host.
type stack struct {
	t       *testing.T
	root    string
	env     []string
	certs   string
	gateway string // host:port of the published gateway
	grpcurl string
	podman  bool
}

func (s *stack) compose(timeout time.Duration, args ...string) (string, error) {
	s.t.Helper()
	full := append([]string{"compose", "-p", project, "-f", filepath.Join(s.root, "compose.yaml")}, args...)
	return run(s.t, timeout, s.env, s.root, "docker", full...)
}

func (s *stack) container(service string) string { return project + "-" + service + "-1" }

// driveHealthchecks runs each service's health check once: podman without
// systemd runs none by itself (a Docker daemon does, and needs none of this).
func (s *stack) driveHealthchecks(services ...string) {
	if !s.podman {
		return
	}
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = exec.CommandContext(ctx, "podman", "healthcheck", "run", s.container(svc)).Run()
		})
	}
	wg.Wait()
}

// health returns the health status docker reports for service.
func (s *stack) health(service string) string {
	out, err := run(s.t, 30*time.Second, s.env, s.root, "docker", "inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", s.container(service))
	if err != nil {
		return "unknown: " + out
	}
	return out
}

func (s *stack) startedAt(service string) string {
	out, _ := run(s.t, 30*time.Second, s.env, s.root, "docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", s.container(service))
	return out
}

// waitHealthy waits, bounded, until every service reports healthy.
func (s *stack) waitHealthy(timeout time.Duration, services ...string) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.driveHealthchecks(services...)
		var bad []string
		for _, svc := range services {
			if h := s.health(svc); h != "healthy" {
				bad = append(bad, svc+"="+h)
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			logs, _ := s.compose(time.Minute, "logs", "--no-color", "--tail", "30")
			s.t.Fatalf("not healthy within %s: %v\n%s", timeout, bad, logs)
		}
		time.Sleep(time.Second)
	}
}

// call runs grpcurl against the published gateway as user (a file stem in
// the certs directory), or with the given TLS flags when user is "".
func (s *stack) call(tlsFlags []string, args ...string) (string, error) {
	s.t.Helper()
	full := append(append(append([]string{}, tlsFlags...), "-max-time", "20"), args...)
	return run(s.t, 30*time.Second, nil, s.root, s.grpcurl, full...)
}

func (s *stack) as(user string) []string {
	return []string{"-cacert", filepath.Join(s.certs, "bundle.pem"),
		"-cert", filepath.Join(s.certs, user+".pem"), "-key", filepath.Join(s.certs, user+"-key.pem")}
}

var orderID = regexp.MustCompile(`"id": "(ord_[0-9a-f]+)"`)

func (s *stack) placeOrder(user string) (string, error) {
	out, err := s.call(s.as(user), "-d", `{"customer_id":"`+user+`","items":[{"product_id":"sku-apple","quantity":1}]}`,
		s.gateway, "shop.gateway.v1.StorefrontService/PlaceOrder")
	if err != nil {
		return out, err
	}
	m := orderID.FindStringSubmatch(out)
	if m == nil {
		return out, fmt.Errorf("no order id in %s", out)
	}
	return m[1], nil
}

// TestCompose runs the mesh under docker compose (make test-compose sets up
// the engine) and uses it from the host as a person would.
func TestCompose(t *testing.T) {
	start := time.Now()
	root := repoRoot(t)
	bin := binaries(t)
	if out, err := run(t, time.Minute, nil, root, "docker", "compose", "version"); err != nil {
		t.Fatalf("docker compose is not usable (make test-compose sets it up): %v\n%s", err, out)
	}
	grpcurl, err := run(t, 5*time.Minute, nil, root, "go", "tool", "-modfile=tools/go.mod", "-n", "grpcurl")
	if err != nil {
		t.Fatalf("go tool -n grpcurl: %v\n%s", err, grpcurl)
	}

	// Certificates in a directory of the test's own, owned by the
	// containers' non-root user.
	certs := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65532, 65532
		if err := os.Chown(certs, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	port := "8443"
	if ln, err := net.Listen("tcp", "127.0.0.1:8443"); err != nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		_ = ln.Close()
		t.Logf("127.0.0.1:8443 is taken here: publishing the gateway on %s", port)
	} else {
		_ = ln.Close()
	}
	s := &stack{t: t, root: root, certs: certs, gateway: "localhost:" + port, grpcurl: grpcurl,
		env: []string{"SHOP_CERTS=" + certs, fmt.Sprintf("SHOP_UID=%d", uid), fmt.Sprintf("SHOP_GID=%d", gid),
			"SHOP_GATEWAY_PORT=" + port, "TRUSTMESH_VERSION=composetest", "COMPOSE_PROGRESS=plain"}}
	if _, err := exec.LookPath("podman"); err == nil && strings.Contains(os.Getenv("DOCKER_HOST"), "podman") {
		s.podman = true
	}
	t.Cleanup(func() { // also after a failure: leave nothing behind
		_, _ = s.compose(2*time.Minute, "down", "--remove-orphans", "--timeout", "5")
	})
	_, _ = s.compose(2*time.Minute, "down", "--remove-orphans", "--timeout", "5") // a previous run's leftovers

	t.Run("up-healthy", func(t *testing.T) {
		done := make(chan struct{})
		var out string
		var err error
		go func() {
			defer close(done)
			out, err = s.compose(6*time.Minute, "up", "-d", "--build")
		}()
		// compose waits for service_healthy dependencies: run the checks
		// meanwhile (podman), bounded by the command's own timeout.
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-time.After(time.Second):
				s.driveHealthchecks(services...)
			}
		}
		if err != nil {
			t.Fatalf("docker compose up: %v\n%s", err, out)
		}
		s.waitHealthy(2*time.Minute, services...)
		t.Logf("up and healthy after %s", time.Since(start).Round(time.Second))
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("grpcurl-as-alice", func(t *testing.T) {
		out, err := s.call(s.as("alice"), s.gateway, "list")
		if err != nil || !strings.Contains(out, "shop.gateway.v1.StorefrontService") {
			t.Errorf("list: %v\n%s", err, out)
		}
		out, err = s.call(s.as("alice"), s.gateway, "shop.gateway.v1.StorefrontService/ListProducts")
		if err != nil || !strings.Contains(out, `"products"`) || !strings.Contains(out, "sku-apple") {
			t.Errorf("ListProducts: %v\n%s", err, out)
		}
		id, err := s.placeOrder("alice")
		if err != nil {
			t.Fatalf("PlaceOrder: %v\n%s", err, id)
		}
		out, err = s.call(s.as("alice"), "-d", `{"order_id":"`+id+`"}`, s.gateway, "shop.gateway.v1.StorefrontService/GetOrder")
		if err != nil || !strings.Contains(out, id) {
			t.Errorf("GetOrder %s: %v\n%s", id, err, out)
		}
	})

	t.Run("refused-without-certificate", func(t *testing.T) {
		out, err := s.call([]string{"-cacert", filepath.Join(certs, "bundle.pem")}, s.gateway, "list")
		if err == nil || !strings.Contains(out, "certificate required") {
			t.Errorf("no client certificate: err %v, want the handshake refused:\n%s", err, out)
		}
	})

	t.Run("refused-from-foreign-ca", func(t *testing.T) {
		foreign := t.TempDir() // another CA for the same trust domain
		if out, err := run(t, time.Minute, nil, root, filepath.Join(bin, "meshctl"), "certs", "init", "--dir", foreign); err != nil {
			t.Fatalf("meshctl certs init: %v\n%s", err, out)
		}
		flags := []string{"-cacert", filepath.Join(certs, "bundle.pem"),
			"-cert", filepath.Join(foreign, "alice.pem"), "-key", filepath.Join(foreign, "alice-key.pem")}
		out, err := s.call(flags, s.gateway, "list")
		if err == nil || !strings.Contains(out, "tls: ") {
			t.Errorf("alice from a foreign CA: err %v, want a TLS refusal:\n%s", err, out)
		}
	})

	t.Run("permission-denied", func(t *testing.T) {
		// bob is a user, but v2 of the storefront is for alice only.
		if out, err := run(t, time.Minute, nil, root, filepath.Join(bin, "meshctl"), "certs", "issue",
			"--id", "spiffe://shop.example/user/bob", "--name", "bob", "--dir", certs); err != nil {
			t.Fatalf("meshctl certs issue: %v\n%s", err, out)
		}
		out, err := s.call(s.as("bob"), "-d", "{}", s.gateway, "shop.gateway.v2.StorefrontService/ListProducts")
		if err == nil || !strings.Contains(out, "Code: PermissionDenied") ||
			!strings.Contains(out, "spiffe://shop.example/user/bob may not call /shop.gateway.v2.StorefrontService/ListProducts") {
			t.Errorf("bob on v2: err %v, want PermissionDenied naming caller and method:\n%s", err, out)
		}
	})

	t.Run("cert-bound-token", func(t *testing.T) {
		// alice's v2 orders need a token from the tokens job's issuer,
		// bound to her certificate.
		token, err := run(t, time.Minute, nil, root, filepath.Join(bin, "meshctl"), "tokens", "issue",
			"--cert", filepath.Join(certs, "alice.pem"), "--dir", certs)
		if err != nil {
			t.Fatalf("meshctl tokens issue: %v\n%s", err, token)
		}
		order := `{"customer_id":"alice","items":[{"product_id":"sku-pear","quantity":1}]}`
		out, err := s.call(s.as("alice"), "-H", "authorization: Bearer "+strings.TrimSpace(token), "-d", order,
			s.gateway, "shop.gateway.v2.StorefrontService/PlaceOrder")
		if err != nil || !strings.Contains(out, "ORDER_STATUS_CONFIRMED") {
			t.Errorf("v2 PlaceOrder with a token: err %v\n%s", err, out)
		}
		out, err = s.call(s.as("alice"), "-d", order, s.gateway, "shop.gateway.v2.StorefrontService/PlaceOrder")
		if err == nil || !strings.Contains(out, "Code: Unauthenticated") {
			t.Errorf("v2 PlaceOrder without a token: err %v, want Unauthenticated\n%s", err, out)
		}
	})

	t.Run("traces-cross-four-services", func(t *testing.T) {
		want := []string{
			"server  shop.gateway.v1.StorefrontService/PlaceOrder",
			"caller=spiffe://shop.example/user/alice",
			"orders ", "server  shop.orders.v1.OrderService/CreateOrder", "caller=spiffe://shop.example/ns/shop/sa/gateway",
			// Who the transaction is for, verified from the gateway's token.
			"subject=spiffe://shop.example/user/alice",
			"inventory ", "server  shop.inventory.v1.InventoryService/Reserve", "caller=spiffe://shop.example/ns/shop/sa/orders",
			"payments ", "server  shop.payments.v1.PaymentService/Charge",
		}
		deadline := time.Now().Add(30 * time.Second)
		var logs string
		for time.Now().Before(deadline) {
			logs, _ = s.compose(time.Minute, "logs", "--no-color", "--no-log-prefix", "traces")
			for _, tree := range strings.Split(logs, "\ntrace ") {
				if !strings.Contains(tree, "StorefrontService/PlaceOrder") {
					continue
				}
				missing := 0
				for _, w := range want {
					if !strings.Contains(tree, w) {
						missing++
					}
				}
				if missing == 0 {
					t.Logf("trace %s", tree)
					return
				}
			}
			time.Sleep(time.Second)
		}
		t.Errorf("no PlaceOrder trace with spans of all four services and their SPIFFE IDs in the traces log:\n%s", logs)
	})

	t.Run("restart-payments", func(t *testing.T) {
		others := map[string]string{}
		for _, svc := range []string{"gateway", "orders", "inventory"} {
			others[svc] = s.startedAt(svc)
		}
		before := s.startedAt("payments")
		if out, err := s.compose(2*time.Minute, "restart", "payments"); err != nil {
			t.Fatalf("docker compose restart payments: %v\n%s", err, out)
		}
		if after := s.startedAt("payments"); after == before {
			t.Errorf("payments was not restarted (%s)", after)
		}
		s.waitHealthy(time.Minute, "payments")
		deadline := time.Now().Add(time.Minute)
		for {
			id, err := s.placeOrder("alice")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PlaceOrder still failing a minute after payments restarted: %v\n%s", err, id)
			}
			time.Sleep(time.Second)
		}
		for svc, was := range others {
			if now := s.startedAt(svc); now != was {
				t.Errorf("%s was touched by restarting payments: %s -> %s", svc, was, now)
			}
		}
	})

	t.Run("down-leaves-nothing", func(t *testing.T) {
		if out, err := s.compose(2*time.Minute, "down", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Fatalf("docker compose down: %v\n%s", err, out)
		}
		out, err := run(t, 30*time.Second, s.env, root, "docker", "ps", "-a", "-q", "--filter", "label=com.docker.compose.project="+project)
		if err != nil || out != "" {
			t.Errorf("containers left after down: %v %q", err, out)
		}
		out, err = run(t, 30*time.Second, s.env, root, "docker", "network", "ls", "-q", "--filter", "label=com.docker.compose.project="+project)
		if err != nil || out != "" {
			t.Errorf("networks left after down: %v %q", err, out)
		}
	})
	t.Logf("compose tier: %s", time.Since(start).Round(time.Second))
}
