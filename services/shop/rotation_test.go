package shop_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/services/shop"
)

// TestRotationUnderLoad rotates every workload SVID in place (as `meshctl
// certs rotate` does) while a client places orders in a loop through all
// four services: every call succeeds, and new handshakes with each service
// present the new serial.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	m := startMesh(t, func(c *shop.Config) { c.Stock = 1_000_000 }) // the loop may place thousands of orders
	client := gatewayv1.NewStorefrontServiceClient(dialAs(t, m, "alice", shop.Gateway))
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		calls    atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5_000 && !stop.Load(); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := client.PlaceOrder(ctx, &gatewayv1.PlaceOrderRequest{CustomerId: "alice",
				Items: []*gatewayv1.CartItem{{ProductId: "sku-apple", Quantity: 1}}})
			cancel()
			calls.Add(1)
			if err != nil && failures.Add(1) == 1 {
				firstErr.Store(err)
			}
		}
	}()
	waitCalls(t, &calls, 10)
	written, err := certs.Rotate(m.CertDir, shop.Services, certs.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range written {
		service := w.Identity.Name
		deadline := time.Now().Add(10 * time.Second)
		for got := serialOf(t, m, service); got != w.Serial; got = serialOf(t, m, service) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still presents serial %s after rotation to %s", service, got, w.Serial)
			}
			time.Sleep(20 * time.Millisecond) // waiting for the file watcher, bounded
		}
	}
	waitCalls(t, &calls, 10)
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed across the rotation: %v", n, calls.Load(), firstErr.Load())
	}
}

// serialOf makes a fresh TLS handshake with service (as admin) and returns
// the serial of the certificate it presents, in hex.
func serialOf(t *testing.T, m *shop.Mesh, service string) string {
	t.Helper()
	creds, err := shop.LoadCredentials(m.CertDir, "admin")
	if err != nil {
		t.Fatal(err)
	}
	svid, err := creds.SVID.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m.Addrs[service], &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // only reads the presented serial
		Certificates:       []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatalf("handshake with %s: %v", service, err)
	}
	defer conn.Close()
	return fmt.Sprintf("%x", conn.ConnectionState().PeerCertificates[0].SerialNumber)
}
