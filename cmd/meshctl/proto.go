package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	trustmeshproto "github.com/trustmesh/trustmesh/proto/trustmesh"
)

const protoUsage = `meshctl proto hands out trustmesh's own proto files.

Usage:
  meshctl proto export DIR   write trustmesh/v1/access.proto (the access options) under DIR
`

const exportUsage = `Usage: meshctl proto export DIR

Writes trustmesh's own proto sources under DIR at their import paths
(DIR/trustmesh/v1/access.proto), creating directories as needed and
replacing files already there, so that your protos can
import "trustmesh/v1/access.proto" without a registry. Name DIR as a module
in your buf.yaml, or pass -I DIR to protoc:

  version: v2
  modules:
    - path: proto
    - path: DIR

and generate only your own files (buf.gen.yaml inputs: directory: proto),
with the options' Go package set to trustmesh's
(override go_package for trustmesh/v1/access.proto:
github.com/trustmesh/trustmesh/gen/trustmesh/v1). Run it again after
upgrading trustmesh.
`

// protoExport writes the embedded proto sources under the directory named
// by the one argument.
func protoExport(_ context.Context, cmdPath string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(cmdPath, flag.ContinueOnError)
	positional, err := parseFlags(flags, cmdPath, exportUsage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) != 1 || positional[0] == "" {
		return usageErrorf("%swant exactly one DIR, got %d arguments (see '%s --help')", where(cmdPath), len(positional), cmdPath)
	}
	dir := positional[0]
	src := trustmeshproto.Files()
	return fs.WalkDir(src, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, name)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path.Join(trustmeshproto.ImportPrefix, name)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("proto export: write %s: %w", dst, err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("proto export: write %s: %w", dst, err)
		}
		_, err = fmt.Fprintf(stdout, "wrote %s\n", dst)
		return err
	})
}
