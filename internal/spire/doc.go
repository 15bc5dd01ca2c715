// Package spire runs a local SPIRE deployment, one spire-server and one
// spire-agent, as child processes: it starts and stops them, waits until
// each reports healthy, registers entries, and fetches a caller's SVID
// through the agent. It drives the real SPIRE binaries (v1.13.3, built by
// `make spire` from tools/spire/go.mod) through their command lines, so
// that SPIRE stays out of the main go.mod. The trust domain is the one the
// given server.conf and agent.conf name; the package knows no particular
// mesh.
//
// Package shopmesh builds on it to run the sample mesh on SPIRE (`shop up
// --spire`, `make test-spire`). It is a development harness, not a way to
// run SPIRE in production.
package spire
