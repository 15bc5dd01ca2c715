// Package shopmesh runs the sample mesh on a local SPIRE deployment
// (package spire, from the configuration in deploy/spire): the entries of
// its four services and of a person, each service in its own process so
// that the agent's unix workload attestor tells them apart by the path of
// their executable, and readiness checked by the services presenting their
// SVIDs.
//
// It backs `shop up --spire` and the SPIRE integration tier (`make
// test-spire`). It is a development harness, not a way to run SPIRE in
// production.
package shopmesh
