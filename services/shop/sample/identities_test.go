package sample_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

func TestDevIdentities(t *testing.T) {
	t.Parallel()
	var got []string
	for _, id := range sample.DevIdentities(spiffeid.RequireTrustDomainFromString(sample.TrustDomain)) {
		got = append(got, id.Name+" "+id.ID.String()+" "+slices.Concat(id.DNSNames, []string{""})[0])
	}
	want := []string{
		"gateway spiffe://shop.example/ns/shop/sa/gateway gateway",
		"orders spiffe://shop.example/ns/shop/sa/orders orders",
		"inventory spiffe://shop.example/ns/shop/sa/inventory inventory",
		"payments spiffe://shop.example/ns/shop/sa/payments payments",
		"admin spiffe://shop.example/ns/ops/sa/admin ",
		"alice spiffe://shop.example/user/alice ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("DevIdentities:\n got %q\nwant %q", got, want)
	}
	if got := sample.Workloads(); !slices.Equal(got, []string{"gateway", "orders", "inventory", "payments"}) {
		t.Errorf("Workloads = %q", got)
	}
}

// TestInitCerts: the sample's defaults fill only what the options leave
// zero.
func TestInitCerts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := sample.InitCerts(dir, certs.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.CA.TrustDomain().Name() != sample.TrustDomain || len(res.SVIDs) != 6 {
		t.Errorf("InitCerts: trust domain %s, %d SVIDs; want shop.example, 6", res.CA.TrustDomain(), len(res.SVIDs))
	}

	other := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	res, err = sample.InitCerts(other, certs.InitOptions{TrustDomain: td, Identities: []certs.Identity{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.CA.TrustDomain() != td || len(res.SVIDs) != 0 {
		t.Errorf("InitCerts with options: trust domain %s, %d SVIDs; want example.org, none", res.CA.TrustDomain(), len(res.SVIDs))
	}
	if _, err := os.Stat(filepath.Join(other, "gateway.pem")); !os.IsNotExist(err) {
		t.Errorf("gateway.pem written though Identities was set: %v", err)
	}
}
