// Package bench holds benchmarks that compare trustmesh with other
// implementations (grpc-go's authz). It is its own module so that what it
// compares against stays out of the main module's dependencies. Run it with
// `make bench`; results and commands are in BENCHMARKS.md.
package bench
