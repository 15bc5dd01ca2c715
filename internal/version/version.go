// Package version holds the build's version, stamped by the Makefile with
// -ldflags "-X github.com/trustmesh/trustmesh/internal/version.Version=...".
package version

// Version is the version of this build; "dev" when not stamped.
var Version = "dev"
