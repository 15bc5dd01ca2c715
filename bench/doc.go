// Package bench holds benchmarks that compare trustmesh with other
// implementations (grpc-go's authz, bare grpc-go and connect-go servers)
// and measure what telemetry costs a call (BenchmarkTracing). It is its own
// module so that what it compares against stays out of the main module's
// dependencies. Run it with `make bench`; results and commands are in
// BENCHMARKS.md. The meshbench command (`make bench-mesh`) measures the
// same configurations each in its own server process: server CPU and
// allocations per call under load, and latency at concurrency 1.
package bench
