// Package spire runs a local SPIRE deployment (one spire-server, one
// spire-agent, from the configuration in deploy/spire) and the sample mesh
// on it, each service in its own process so that the agent's unix workload
// attestor tells them apart by the path of their executable. It drives the
// real SPIRE v1.13.3 binaries (built by `make spire` from tools/spire/go.mod)
// through their command lines, so that SPIRE stays out of the main go.mod.
//
// It backs `shop up --spire` and the SPIRE integration tier (`make
// test-spire`). It is a development harness, not a way to run SPIRE in
// production.
package spire
