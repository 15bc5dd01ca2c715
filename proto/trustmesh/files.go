// Package trustmesh holds trustmesh's own protobuf sources, the access
// options of trustmesh/v1/access.proto, as files, so that a program can copy
// them into anyone's buf workspace or protoc include path without a
// registry: `meshctl proto export DIR` does that.
//
// The generated Go code of these files is github.com/trustmesh/trustmesh/gen/trustmesh/v1;
// code generated from a proto that imports them must import that package (in
// buf managed mode, a go_package override for trustmesh/v1/access.proto),
// so that the options are registered once.
package trustmesh

import (
	"embed"
	"io/fs"
)

//go:embed v1/*.proto
var files embed.FS

// ImportPrefix is the directory every file of [Files] is imported under:
// the file "v1/access.proto" is imported as "trustmesh/v1/access.proto".
const ImportPrefix = "trustmesh"

// Files returns the proto sources, read-only, named by their paths below
// [ImportPrefix] ("v1/access.proto").
func Files() fs.FS {
	return files
}
