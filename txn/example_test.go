package txn_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/txn"
)

// exampleMesh returns a development CA for shop.example and the gateway's
// SVID, both made at now, so that the examples' output does not change.
func exampleMesh(now time.Time) (*certs.CA, *x509svid.SVID) {
	td := spiffeid.RequireTrustDomainFromString("shop.example")
	ca, err := certs.NewCA(td, certs.WithNow(now))
	if err != nil {
		log.Fatal(err)
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromPath(td, "/ns/shop/sa/gateway"), Now: now})
	if err != nil {
		log.Fatal(err)
	}
	return ca, svid
}

// The edge (the gateway) mints a token for its verified caller, alice, on
// the call that enters the mesh; every workload downstream verifies it
// against the trust bundle it already has, with the gateway as the only
// minter.
func Example() {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, gatewaySVID := exampleMesh(now)
	shop := ca.TrustDomain()

	// At the edge. With tracing on, the call's span names the transaction.
	minter, err := txn.NewMinter(gatewaySVID, shop)
	if err != nil {
		log.Fatal(err)
	}
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID}))
	tok, err := minter.Mint(ctx, txn.Request{
		Subject: spiffeid.RequireFromString("spiffe://shop.example/user/alice"),
		Method:  "/shop.gateway.v1.StorefrontService/PlaceOrder",
		Now:     now,
	})
	if err != nil {
		log.Fatal(err)
	}

	// Downstream, on each hop: tok.Raw() arrived in the txn-token header.
	verifier, err := txn.NewVerifier(ca.Bundle(), shop, spiffeid.MatchOneOf(gatewaySVID.ID))
	if err != nil {
		log.Fatal(err)
	}
	got, err := verifier.Verify(tok.Raw(), now.Add(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("subject:", got.Subject())
	fmt.Println("minter: ", got.Minter())
	fmt.Println("txn:    ", got.ID())
	fmt.Println("method: ", got.Method())
	fmt.Println("expires:", got.Expiry().UTC().Format(time.RFC3339))

	// The same token two minutes later: it lived 60 s.
	_, err = verifier.Verify(tok.Raw(), now.Add(2*time.Minute))
	fmt.Println(err)
	// Output:
	// subject: spiffe://shop.example/user/alice
	// minter:  spiffe://shop.example/ns/shop/sa/gateway
	// txn:     4bf92f3577b34da6a3ce929d0e0e4736
	// method:  /shop.gateway.v1.StorefrontService/PlaceOrder
	// expires: 2026-01-02T03:05:05Z
	// txn: token expired: exp 2026-01-02T03:05:05Z is more than 5s before 2026-01-02T03:06:05Z
}

// A client forwards the token of the call being served, unchanged, on
// every call it makes in that call's context: in the txn-token metadata on
// grpc-go, in the Txn-Token header on Connect or plain HTTP. (The mesh
// package's clients do this for you.)
func ExampleRawFromContext() {
	now := time.Now()
	ca, gatewaySVID := exampleMesh(now)
	minter, err := txn.NewMinter(gatewaySVID, ca.TrustDomain())
	if err != nil {
		log.Fatal(err)
	}
	tok, err := minter.Mint(context.Background(), txn.Request{
		Subject: spiffeid.RequireFromString("spiffe://shop.example/user/alice"),
		Method:  "/shop.gateway.v1.StorefrontService/PlaceOrder",
	})
	if err != nil {
		log.Fatal(err)
	}
	// What the server did for the handler: ctx is the served call's.
	ctx := txn.NewContext(context.Background(), tok)

	raw, ok := txn.RawFromContext(ctx)
	if !ok {
		return // no transaction: nothing to forward
	}
	// grpc-go:
	outgoing := metadata.AppendToOutgoingContext(ctx, txn.MetadataKey, raw)
	// Connect, HTTP:
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://orders.shop.example/shop.orders.v1.OrderService/CreateOrder", nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set(txn.HeaderName, raw)

	md, _ := metadata.FromOutgoingContext(outgoing)
	fmt.Println(md.Get("txn-token")[0] == tok.Raw(), req.Header.Get("Txn-Token") == tok.Raw())
	// Output: true true
}
