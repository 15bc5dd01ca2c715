// Package oteltest holds the helpers that the tests of the telemetry
// packages share: a writer safe for concurrent use, an environment without
// the developer's OTEL_* variables, and polling with a deadline.
package oteltest
