// Package shop runs the sample mesh: each of gateway, orders, inventory and
// payments behind mutual TLS with its own SPIFFE identity, wired to its
// downstreams by expected SPIFFE ID. [Serve] runs one service (what
// `shop serve NAME` and compose run); [Start] runs all four on loopback in one
// process (what `shop up` and the end-to-end tests run).
package shop
