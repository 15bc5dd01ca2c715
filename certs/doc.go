// Package certs provides trust bundles and X.509-SVIDs for trustmesh.
//
// This part of the package is a development PKI: a self-signed ECDSA P-256
// root [CA] for one SPIFFE trust domain that issues X.509-SVIDs (leaf
// certificates whose only URI SAN is the workload's SPIFFE ID), and helpers
// that write that material to a directory and read it back.
//
// A development directory, as written by [Init] (and `meshctl certs init`),
// holds:
//
//	bundle.pem        the CA certificate: the trust bundle every peer verifies against (0644)
//	ca-key.pem        the CA private key, PKCS#8 (0600)
//	NAME.pem          an SVID's certificate chain, leaf first (0644)
//	NAME-key.pem      that SVID's private key, PKCS#8 (0600)
//
// The identities [Init] issues are listed by [DevIdentities]: the four
// workloads of the sample mesh, an operator and a person.
//
// Everything here is built on go-spiffe: IDs are spiffeid.ID, bundles are
// x509bundle.Bundle and SVIDs are x509svid.SVID, so the material plugs
// into go-spiffe's x509svid.Source and x509bundle.Source seams unchanged.
// [Inspect] explains a certificate file the way a peer would judge it.
//
// The development CA is for local runs and tests only; production identities
// come from SPIRE through the Workload API.
package certs
