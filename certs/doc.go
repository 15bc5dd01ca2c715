// Package certs provides trust bundles and X.509-SVIDs for trustmesh.
//
// It has two halves. The first is a development PKI: a self-signed ECDSA
// P-256 root [CA] for one SPIFFE trust domain, optionally with an
// intermediate ([CA.NewIntermediate]), that issues X.509-SVIDs (leaf
// certificates whose only URI SAN is the workload's SPIFFE ID), and helpers
// that write that material to a directory, read it back and re-issue it
// in place ([Rotate]).
//
// A development directory, as written by [Init] (and `meshctl certs init`),
// holds:
//
//	bundle.pem            the root CA certificate: the trust bundle every peer verifies against (0644)
//	ca-key.pem            the root CA private key, PKCS#8 (0600)
//	intermediate.pem      with an intermediate only: its certificate (0644)
//	intermediate-key.pem  with an intermediate only: its private key, PKCS#8 (0600)
//	NAME.pem              an SVID's certificate chain, leaf first, then the intermediate if any (0644)
//	NAME-key.pem          that SVID's private key, PKCS#8 (0600)
//
// [Init] issues the identities it is given ([InitOptions.Identities]);
// [DevWorkload] gives a workload the DNS and IP SANs a local run needs.
// The package knows no particular mesh: the sample mesh's identities live
// with the sample (and in `meshctl certs init`'s defaults).
//
// The second half are live sources of a workload's own SVID and of the
// trust bundles it verifies peers against: [FileSource] watches files (a
// development directory, a Kubernetes secret) and swaps in rotated ones
// once they check out; [WorkloadSource] follows the SPIFFE Workload API
// (a SPIRE agent), which is how production identities arrive. Federated
// trust domains come from a directory of TRUST_DOMAIN.pem bundles
// ([LoadBundleSet], [FileSourceConfig.BundleDir]) or from the Workload API.
// Both sources warn before their SVID expires and report the
// [ExpiryMetric] gauge.
//
// Everything here is built on go-spiffe: IDs are spiffeid.ID, bundles are
// x509bundle.Bundle and SVIDs are x509svid.SVID, and both sources implement
// go-spiffe's x509svid.Source and x509bundle.Source, so they plug into the
// mesh's TLS configurations, which read them on every handshake.
// [Inspect] explains a certificate file the way a peer would judge it.
//
// The development CA is for local runs and tests only.
package certs
