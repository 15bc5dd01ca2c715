// Package leancore holds no code. Its test keeps the toolkit's core lean:
// importing identity, policy, interceptors, mesh, certs, tokens or
// telemetry must link no OpenTelemetry exporter, no Prometheus, no OTLP
// receiver, and nothing of the sample mesh (gen/, services/). Those belong
// to the binaries, which get them from telemetry/otelenv and
// telemetry/tracetree.
//
// testdata/ holds the programs whose sizes BENCHMARKS.md compares ("A lean
// core"): interceptorsize imports interceptors, attributesize only
// otel/attribute, stacksize the RPC stacks without trustmesh.
package leancore
