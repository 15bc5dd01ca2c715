package sample

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
)

// TrustDomain is the sample mesh's trust domain.
const TrustDomain = "shop.example"

// The sample mesh's workloads.
const (
	Gateway   = "gateway"
	Orders    = "orders"
	Inventory = "inventory"
	Payments  = "payments"
)

// Workloads returns the names of the sample mesh's workloads, edge first.
// Each call returns a fresh slice.
func Workloads() []string { return []string{Gateway, Orders, Inventory, Payments} }

// WorkloadID returns the SPIFFE ID of workload name in trust domain td:
// spiffe://TD/ns/shop/sa/NAME.
func WorkloadID(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", "shop", "sa", name)
}

// DevIdentities returns the sample mesh's development identities in trust
// domain td, in the order they are issued:
//
//	gateway, orders, inventory, payments   spiffe://TD/ns/shop/sa/NAME (certs.DevWorkload: DNS SANs NAME and localhost, IP SAN 127.0.0.1)
//	admin (the operator)                   spiffe://TD/ns/ops/sa/admin
//	alice (a person, e.g. grpcurl)         spiffe://TD/user/alice
//
// A zero td gives identities with zero IDs, which [certs.Init] rejects.
// Each call returns a fresh slice.
func DevIdentities(td spiffeid.TrustDomain) []certs.Identity {
	var idents []certs.Identity
	for _, name := range Workloads() {
		id, _ := WorkloadID(td, name)
		idents = append(idents, certs.DevWorkload(name, id))
	}
	admin, _ := spiffeid.FromSegments(td, "ns", "ops", "sa", "admin")
	alice, _ := spiffeid.FromSegments(td, "user", "alice")
	return append(idents, certs.Identity{Name: "admin", ID: admin}, certs.Identity{Name: "alice", ID: alice})
}

// InitCerts is [certs.Init] for the sample mesh: a zero opts.TrustDomain
// becomes [TrustDomain], and nil opts.Identities become the
// [DevIdentities] of the trust domain.
func InitCerts(dir string, opts certs.InitOptions) (certs.InitResult, error) {
	if opts.TrustDomain.IsZero() {
		opts.TrustDomain = spiffeid.RequireTrustDomainFromString(TrustDomain)
	}
	if opts.Identities == nil {
		opts.Identities = DevIdentities(opts.TrustDomain)
	}
	return certs.Init(dir, opts)
}
