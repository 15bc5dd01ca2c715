package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/gateway"
	"github.com/trustmesh/trustmesh/services/inventory"
	"github.com/trustmesh/trustmesh/services/orders"
	"github.com/trustmesh/trustmesh/services/payments"
	"github.com/trustmesh/trustmesh/txn"
)

// The sample's services, and the people the driver calls as.
const (
	svcGateway   = "gateway"
	svcOrders    = "orders"
	svcInventory = "inventory"
	svcPayments  = "payments"

	aliceID = "spiffe://shop.example/user/alice"
)

// newFanoutServer builds service name of the bare fan-out (placeorder/bare):
// the sample's services each on its own stack as in the sample (gateway
// and payments on connect-go, orders and inventory on grpc-go), with
// crypto/tls mTLS (client certificates verified against the CA, servers
// verified by DNS name), no authorization, no transaction tokens, no
// request validation and no telemetry; their clients are bare grpc-go
// (and, from orders to payments, connect-go over gRPC, as in the sample).
// The method bodies are the sample's: inventory, payments and orders are
// services/inventory, services/payments and services/orders as they are;
// the gateway's PlaceOrder is [bareGateway], the gateway's body without
// what needs a mesh identity. Each logs as `shop serve` does by default
// (text, level info, on stderr). certDir holds NAME.pem and NAME-key.pem;
// addrs is the downstreams' addresses, "NAME=ADDR,...".
func newFanoutServer(ctx context.Context, name, certDir string, ca *certs.CA, addrs string) (serve func(context.Context, net.Listener) error, shutdown func(context.Context) error, err error) {
	down, err := parseAddrs(addrs)
	if err != nil {
		return nil, nil, err
	}
	svid, err := x509svid.Load(filepath.Join(certDir, name+".pem"), filepath.Join(certDir, name+"-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("meshbench: serve placeorder/bare %s: %w", name, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With(slog.String("service", name))
	srvTLS, cliTLS := bareTLS(ca, svid), bareClientTLS(ca, svid)
	creds := grpc.Creds(credentials.NewTLS(srvTLS))
	compress := connect.WithCompressMinBytes(mesh.CompressMinBytes) // as on the bare per-hop connect-go server
	none := func(context.Context) error { return nil }
	switch name {
	case svcInventory:
		impl, err := inventory.New(inventory.Config{}, log)
		if err != nil {
			return nil, nil, fmt.Errorf("meshbench: serve placeorder/bare %s: %w", name, err)
		}
		srv := grpc.NewServer(creds)
		inventoryv1.RegisterInventoryServiceServer(srv, impl)
		return serveGRPC(srv), none, nil
	case svcPayments:
		mux := http.NewServeMux()
		mux.Handle(paymentsv1connect.NewPaymentServiceHandler(payments.New(payments.Config{}, log), compress))
		return serveHTTP(mux, srvTLS), none, nil
	case svcOrders:
		inv, err := dialBare(down, svcInventory, cliTLS)
		if err != nil {
			return nil, nil, err
		}
		payAddr, ok := down[svcPayments]
		if !ok {
			_ = inv.Close()
			return nil, nil, fmt.Errorf("meshbench: serve placeorder/bare %s: no %s address in %s", name, svcPayments, addrsEnv)
		}
		pay := paymentsv1connect.NewPaymentServiceClient(bareHTTPClient(cliTLS), "https://"+payAddr, connect.WithGRPC())
		impl, err := orders.New(orders.Config{StepInterval: orders.DefaultStepInterval}, inventoryv1.NewInventoryServiceClient(inv), pay, log)
		if err != nil {
			_ = inv.Close()
			return nil, nil, fmt.Errorf("meshbench: serve placeorder/bare %s: %w", name, err)
		}
		subject, err := subjectToken(ctx, svid)
		if err != nil {
			_ = inv.Close()
			return nil, nil, err
		}
		srv := grpc.NewServer(creds, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(txn.NewContext(ctx, subject), req)
		}))
		ordersv1.RegisterOrderServiceServer(srv, impl)
		serveOrders := serveGRPC(srv)
		return func(ctx context.Context, ln net.Listener) error {
				// Closing orders ends its later-status goroutines, as
				// `shop serve` does when it stops.
				stop := context.AfterFunc(ctx, func() { _ = impl.Close() })
				defer stop()
				return serveOrders(ctx, ln)
			}, func(context.Context) error {
				return errors.Join(impl.Close(), inv.Close())
			}, nil
	case svcGateway:
		ord, err := dialBare(down, svcOrders, cliTLS)
		if err != nil {
			return nil, nil, err
		}
		mux := http.NewServeMux()
		mux.Handle(gatewayv1connect.NewStorefrontServiceHandler(bareGateway{orders: ordersv1.NewOrderServiceClient(ord)}, compress))
		return serveHTTP(callerFromTLS(mux), srvTLS), func(context.Context) error { return ord.Close() }, nil
	}
	return nil, nil, fmt.Errorf("meshbench: serve placeorder/bare: unknown service %q (want %s, %s, %s or %s)", name, svcGateway, svcOrders, svcInventory, svcPayments)
}

// parseAddrs parses "NAME=ADDR,NAME=ADDR" ("" is none).
func parseAddrs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for kv := range strings.SplitSeq(s, ",") {
		name, addr, ok := strings.Cut(kv, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("meshbench: %s %q: want NAME=ADDR pairs separated by commas", addrsEnv, s)
		}
		out[name] = addr
	}
	return out, nil
}

// subjectToken is the stand-in for the transaction token that the mesh
// verifies on every call to orders: a token for alice (who the driver
// calls as), minted once at start with orders' own SVID, which the bare
// orders puts in each call's context so that the orders service's body
// finds its subject (txn.FromContext). Nothing verifies it, and it goes
// nowhere downstream: that is the work a bare server does not do.
func subjectToken(ctx context.Context, svid *x509svid.SVID) (*txn.Token, error) {
	m, err := txn.NewMinter(svid, svid.ID.TrustDomain())
	if err != nil {
		return nil, fmt.Errorf("meshbench: serve placeorder/bare orders: %w", err)
	}
	tok, err := m.Mint(ctx, txn.Request{Subject: spiffeid.RequireFromString(aliceID), Method: gatewayv1connect.StorefrontServicePlaceOrderProcedure})
	if err != nil {
		return nil, fmt.Errorf("meshbench: serve placeorder/bare orders: %w", err)
	}
	return tok, nil
}

// dialBare is a bare grpc-go client of the downstream service name, at
// its address in addrs, over tlsCfg.
func dialBare(addrs map[string]string, name string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	addr, ok := addrs[name]
	if !ok {
		return nil, fmt.Errorf("meshbench: serve placeorder/bare: no %s address in %s", name, addrsEnv)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("meshbench: serve placeorder/bare: dial %s: %w", name, err)
	}
	return conn, nil
}

// bareHTTPClient is an HTTP/2 client over tlsCfg, for connect-go.
func bareHTTPClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
}

// bareClientTLS is what a bare client does: TLS 1.3, its certificate, the
// server's verified against the CA and the name "localhost" (every sample
// workload's SVID has it).
func bareClientTLS(ca *certs.CA, svid *x509svid.SVID) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tlsCert(svid)},
		RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"},
	}
}

// callerKey carries, in a bare gateway's call context, the URI SAN of the
// client certificate that crypto/tls verified.
type callerKey struct{}

// callerFromTLS is what a bare connect-go server does to know its caller:
// it reads the URI SAN of the verified client certificate (no SPIFFE
// checks) from the request's TLS state.
func callerFromTLS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			r = r.WithContext(context.WithValue(r.Context(), callerKey{}, r.TLS.PeerCertificates[0].URIs[0].String()))
		}
		next.ServeHTTP(w, r)
	})
}

// bareGateway is the gateway's PlaceOrder (services/gateway) without what
// needs a mesh identity: the order is created for the caller that
// [callerFromTLS] found; the checks of the configured most items and of a
// claimed customer are left out (the driver claims none).
type bareGateway struct {
	gatewayv1connect.UnimplementedStorefrontServiceHandler
	orders ordersv1.OrderServiceClient
}

func (g bareGateway) PlaceOrder(ctx context.Context, req *connect.Request[gatewayv1.PlaceOrderRequest]) (*connect.Response[gatewayv1.PlaceOrderResponse], error) {
	who, _ := ctx.Value(callerKey{}).(string)
	items := make([]*ordersv1.CartItem, 0, len(req.Msg.GetItems()))
	for _, item := range req.Msg.GetItems() {
		items = append(items, &ordersv1.CartItem{ProductId: item.GetProductId(), Quantity: item.GetQuantity()})
	}
	res, err := g.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: who, Items: items})
	if err != nil {
		st := status.Convert(err)
		return nil, connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	}
	return connect.NewResponse(&gatewayv1.PlaceOrderResponse{Order: gateway.ToStorefront(res.GetOrder())}), nil
}
