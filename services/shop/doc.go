// Package shop runs the sample mesh: each of gateway, orders, inventory and
// payments behind mutual TLS with its own SPIFFE identity, wired to its
// downstreams by expected SPIFFE ID. [Serve] runs one service (what
// `shop serve NAME` and compose run); [Start] runs all four on loopback in one
// process (what `shop up` and the end-to-end tests run).
//
// Every call is authorized by the protos' access options merged with the
// policy file. The gateway is the edge of transaction tokens: it mints one,
// with its own SVID, for each call a person makes to it (for that person's
// SPIFFE ID), and its clients forward it downstream; orders, inventory and
// payments verify the token each call carries against the trust bundles,
// trusting the minters the policy's txn_issuers names, and orders serves
// only the token's subject.
package shop
