// Package tracetree makes trustmesh's traces readable on a terminal: each
// finished trace as an indented tree, one line per span, with the caller,
// the authorization decision and the rule from the span attributes of
// [github.com/trustmesh/trustmesh/telemetry].
//
// [Format] renders spans already collected. A [Printer] is an SDK span
// processor that prints each trace once it is complete, for spans of this
// process. [ServeReceiver] accepts OTLP (gRPC and HTTP/protobuf) from other
// processes and prints their traces the same way (`shop traces`).
//
// It links the OTel SDK, the OTLP collector protos and a gRPC server, so it
// is for the sample's binaries and tools, not for the toolkit's packages.
package tracetree
