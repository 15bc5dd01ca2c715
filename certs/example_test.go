package certs_test

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
)

func ExampleCA_Issue() {
	td := spiffeid.RequireTrustDomainFromString("shop.example")
	ca, err := certs.NewCA(td)
	if err != nil {
		fmt.Println(err)
		return
	}
	svid, err := ca.Issue(certs.IssueRequest{
		ID:       spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/orders"),
		DNSNames: []string{"orders"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	id, _, err := x509svid.Verify(svid.Certificates, ca.Bundle())
	fmt.Println(id, err)

	_, err = ca.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString("spiffe://other.example/x")})
	fmt.Println(err)
	// Output:
	// spiffe://shop.example/ns/shop/sa/orders <nil>
	// certs: issue spiffe://other.example/x: trust domain "other.example" does not match CA trust domain "shop.example"
}
