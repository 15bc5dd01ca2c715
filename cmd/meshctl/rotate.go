package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

const rotateUsage = `Usage: meshctl certs rotate [--dir certs/dev] [--ttl 24h] [NAME...]

Re-issues the SVIDs NAME.pem / NAME-key.pem in --dir, in place, from the
CA in --dir (its intermediate, if there is one). Each new SVID keeps the
SPIFFE ID, DNS SANs and IP SANs of the one it replaces and gets a fresh
key. Both files are replaced atomically, key first, so running services
(shop up, shop serve) pick the new SVIDs up without a restart.

By default, the sample mesh's four workloads are rotated: gateway,
orders, inventory, payments. Any NAME with a NAME.pem works, e.g. admin or
alice, or the --workloads given to 'meshctl certs init'.
`

func certsRotate(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	dir := flags.String("dir", defaultDir, "directory holding the CA and the SVIDs")
	ttl := flags.Duration("ttl", certs.DefaultSVIDTTL, "lifetime of each new SVID (at most 1 year)")
	names, err := parseFlags(flags, path, rotateUsage, args, stdout)
	if err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasSuffix(name, ".pem") {
			return usageErrorf("%sNAME %q: give the name without .pem, e.g. %q (see '%s --help')", where(path), name, strings.TrimSuffix(name, ".pem"), path)
		}
	}

	if len(names) == 0 {
		names = sample.Workloads()
	}
	rotated, err := certs.Rotate(*dir, names, certs.RotateOptions{TTL: *ttl})
	for _, s := range rotated {
		fmt.Fprintf(stdout, "rotated %s (serial %s, expires %s)\n  wrote %s\n  wrote %s\n",
			s.Identity.ID, s.Serial, formatTime(s.NotAfter), s.CertFile, s.KeyFile)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (run 'meshctl certs init --dir %s' first, or 'meshctl certs issue --dir %s' for a new name)", err, *dir, *dir)
	}
	return err
}
