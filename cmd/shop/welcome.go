package main

import (
	"fmt"
	"io"
	"net"
	"path/filepath"

	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// printWelcome tells a person how to call the mesh that just came up, and
// where its metrics are when prom is not nil.
func printWelcome(w io.Writer, m *shop.Mesh, prom *otelenv.PrometheusServer) {
	metrics := ""
	if prom != nil {
		metrics = fmt.Sprintf("  metrics   %s  Prometheus, every service's series labelled service_name\n", prom.URL())
	}
	d := m.CertDir
	tlsFlags := fmt.Sprintf("-cacert %s -cert %s -key %s", filepath.Join(d, "bundle.pem"), filepath.Join(d, "alice.pem"), filepath.Join(d, "alice-key.pem"))
	gw := m.Addrs[shop.Gateway]
	fmt.Fprintf(w, `
trustmesh sample mesh is up (Ctrl-C to stop):
  gateway   %s  connect-go  (gRPC, gRPC-Web, Connect)
  orders    %s  grpc-go
  inventory %s  grpc-go
  payments  %s  connect-go
%[10]s
Call it as alice (spiffe://shop.example/user/alice) with grpcurl
(no grpcurl installed? use: go tool -modfile=tools/go.mod grpcurl):

  grpcurl %[5]s %[6]s list
  grpcurl %[5]s %[6]s shop.gateway.v1.StorefrontService/ListProducts
  grpcurl %[5]s -d '{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":2}]}' %[6]s shop.gateway.v1.StorefrontService/PlaceOrder
  grpcurl %[5]s -d '{"order_id":"ORDER_ID"}' %[6]s shop.gateway.v1.StorefrontService/WatchOrder

or with curl, over the Connect protocol:

  curl --cert %[7]s --key %[8]s --cacert %[9]s -H 'Content-Type: application/json' -d '{}' https://%[6]s/shop.gateway.v1.StorefrontService/ListProducts

`, gw, m.Addrs[shop.Orders], m.Addrs[shop.Inventory], m.Addrs[shop.Payments], tlsFlags, gatewayHost(gw),
		filepath.Join(d, "alice.pem"), filepath.Join(d, "alice-key.pem"), filepath.Join(d, "bundle.pem"), metrics)
}

// gatewayHost names the gateway by "localhost" (a DNS SAN of its
// certificate) so that grpcurl's and curl's host name checks pass.
func gatewayHost(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return "localhost:" + port
}
