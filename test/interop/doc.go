// Package interop is the interop tier (`make test-interop`): clients that
// nobody here wrote call the sample mesh over mTLS, each in its own
// language: Python grpcio (Debian's python3-grpcio), Node @grpc/grpc-js and
// @connectrpc/connect-node (npm, pinned in node/package-lock.json), and
// grpcurl. Its test is behind the build tag interop, since it needs those
// installed (the make target installs them); see README.md.
package interop
