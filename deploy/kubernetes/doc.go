// Package kubernetes holds the test of the Kubernetes manifests beside it:
// every document is strictly decoded into its upstream API type (an unknown
// field fails), and the SPIFFE IDs the manifests imply are checked against
// the sample mesh's policy.
//
// It is a module of its own so that the Kubernetes API types stay out of
// the main module's dependencies.
package kubernetes
