package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// defaultDir is where development material lives, relative to the working
// directory (the repository root; git-ignored).
const defaultDir = "certs/dev"

const certsUsage = `meshctl certs manages the development PKI: a CA for a SPIFFE trust domain
and the X.509-SVIDs it issues. The material lives in a directory
(default certs/dev): bundle.pem (the trust bundle), ca-key.pem,
jwt-key.pem (the JWT-SVID signing key), bundle.json (the trust bundle in
the SPIFFE bundle format, with the JWT-SVID key), intermediate.pem /
intermediate-key.pem (with --intermediate), and NAME.pem / NAME-key.pem
per SVID.

Usage:
  meshctl certs init     [--dir certs/dev] [--ttl 24h] [--force] [--intermediate] [--trust-domain TD] [--workloads NAME=PATH,...] [--identities NAME=PATH,...] [--dns NAME,...]
  meshctl certs issue    --id SPIFFE_ID --name NAME [--dns NAME,...] [--ip IP,...] [--ttl 24h] [--dir certs/dev]
  meshctl certs inspect  [--bundle FILE] FILE
  meshctl certs rotate   [--dir certs/dev] [--ttl 24h] [NAME...]

Run 'meshctl certs <subcommand> --help' for details.
`

const initUsage = `Usage: meshctl certs init [--dir certs/dev] [--ttl 24h] [--force] [--intermediate] [--trust-domain TD] [--workloads NAME=PATH,...] [--identities NAME=PATH,...] [--dns NAME,...]

Writes a development PKI to --dir: a CA for --trust-domain (bundle.pem,
ca-key.pem), its JWT-SVID signing key (jwt-key.pem), the trust bundle in
the SPIFFE bundle format (bundle.json: the CA certificate with use
x509-svid, the JWT-SVID key with use jwt-svid), and an SVID NAME.pem /
NAME-key.pem for each NAME=PATH of --workloads and --identities, with the
SPIFFE ID spiffe://TD/PATH:

  --workloads    services: DNS SANs NAME and localhost, IP SAN 127.0.0.1
  --identities   people and operators: the SPIFFE ID only

Both take comma-separated lists and may be repeated; a list given replaces
the default, and an empty one ("") issues none. By default they are the
sample mesh's identities, in trust domain shop.example:

  gateway, orders, inventory, payments   spiffe://TD/ns/shop/sa/NAME (DNS SANs NAME, localhost; IP SAN 127.0.0.1)
  admin                                  spiffe://TD/ns/ops/sa/admin
  alice                                  spiffe://TD/user/alice

A CA already in --dir is kept, so running init again only refreshes the
SVIDs; --force replaces the CA (every SVID issued from the old one stops
verifying). --dns adds host names to every workload SVID, e.g. the names
a container network gives the services.

--intermediate issues the SVIDs from an intermediate CA
(intermediate.pem, intermediate-key.pem) signed by the root: each NAME.pem
then holds the leaf and the intermediate, bundle.pem only the root. A
root created without --intermediate cannot take one: add --force.

Example, for services of your own:
  meshctl certs init --trust-domain example.org --workloads api=/ns/prod/sa/api,worker=/ns/prod/sa/worker --identities bob=/user/bob
`

const issueUsage = `Usage: meshctl certs issue --id SPIFFE_ID --name NAME [--dns NAME,...] [--ip IP,...] [--ttl 24h] [--dir certs/dev]

Issues one X.509-SVID from the CA in --dir and writes it to --dir as
NAME.pem (certificate) and NAME-key.pem (private key, mode 0600).
--id must be in the CA's trust domain and have a path. --dns and --ip take
comma-separated lists and may be repeated.

Example:
  meshctl certs issue --id spiffe://shop.example/user/bob --name bob
`

const inspectUsage = `Usage: meshctl certs inspect [--bundle FILE] [--trust-domain TD] [--audience AUD] [--jwks] FILE|TOKEN|-

Explains the certificate in FILE (the first one, if FILE holds a chain):
its SPIFFE ID, SANs, validity, key usages, and whether it chains to the
trust bundle under the X.509-SVID rules. By default, the bundle is
bundle.pem in FILE's directory, if there is one. Exits 1 if the
certificate does not chain to the bundle.

A JWT-SVID (in FILE, given as TOKEN, or read from standard input with -,
which keeps it out of the shell history) is decoded, its header and claims
printed as the token states them, then verified as a server verifies it:
against the jwt-svid keys of the SPIFFE bundle in --bundle (by default
bundle.json next to FILE, then certs/dev/bundle.json), for --audience (by
default the token's own first aud value, which proves only that it is for
someone), under every rule of the JWT-SVID specification. --jwks reads
--bundle as a plain JWK Set of JWT-SVID keys (what the Workload API's
FetchJWTBundles sends) for --trust-domain (default: the token's). Prints OK
and whose token it is, or exits 1 with the one-line reason.

Example (a development JWT-SVID, as the inventory service would check it):
  meshctl certs inspect --audience spiffe://shop.example/ns/shop/sa/inventory - < token.txt
`

func certsInit(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	dir := flags.String("dir", defaultDir, "directory to write to")
	ttl := flags.Duration("ttl", certs.DefaultSVIDTTL, "lifetime of each SVID (at most 1 year)")
	force := flags.Bool("force", false, "replace an existing CA")
	intermediate := flags.Bool("intermediate", false, "issue the SVIDs from an intermediate CA signed by the root")
	tdName := flags.String("trust-domain", sample.TrustDomain, "trust domain of a new CA and of the identities; the default is the sample mesh's")
	workloads, others := sampleIdentities()
	flags.Var(workloads, "workloads", "workload SVIDs as NAME=PATH, comma-separated; repeatable; the default is the sample mesh's")
	flags.Var(others, "identities", "SVIDs of people and operators as NAME=PATH, comma-separated; repeatable; the default is the sample mesh's")
	var dns listFlag
	flags.Var(&dns, "dns", "extra DNS SANs for every workload SVID, comma-separated; repeatable")
	if err := parseNoArgs(flags, path, initUsage, args, stdout); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	td, err := parseTrustDomain(*tdName)
	if err != nil {
		return err
	}
	idents, err := workloads.identities("workloads", td, true)
	if err != nil {
		return err
	}
	people, err := others.identities("identities", td, false)
	if err != nil {
		return err
	}

	res, err := certs.Init(*dir, certs.InitOptions{TrustDomain: td, Identities: append(idents, people...),
		TTL: *ttl, Force: *force, ExtraDNSNames: dns, Intermediate: *intermediate})
	if err != nil {
		return err
	}
	printInit(stdout, td, res)
	return nil
}

// printInit reports what certs init did.
func printInit(stdout io.Writer, td spiffeid.TrustDomain, res certs.InitResult) {
	rootCert := res.CA.Bundle().X509Authorities()[0]
	if res.CACreated {
		fmt.Fprintf(stdout, "created CA %s in %s (expires %s)\n", td.IDString(), res.Dir, formatTime(rootCert.NotAfter))
		fmt.Fprintf(stdout, "  wrote %s\n  wrote %s\n", filepath.Join(res.Dir, certs.CAKeyFile), filepath.Join(res.Dir, certs.BundleFile))
	} else {
		fmt.Fprintf(stdout, "kept existing CA %s in %s (expires %s; --force replaces it)\n", td.IDString(), res.Dir, formatTime(rootCert.NotAfter))
	}
	switch {
	case res.IntermediateCreated:
		fmt.Fprintf(stdout, "created intermediate CA in %s (expires %s)\n  wrote %s\n  wrote %s\n", res.Dir, formatTime(res.CA.Certificate().NotAfter),
			filepath.Join(res.Dir, certs.IntermediateKeyFile), filepath.Join(res.Dir, certs.IntermediateFile))
	case res.CA.IsIntermediate():
		fmt.Fprintf(stdout, "kept existing intermediate CA in %s (expires %s)\n", res.Dir, formatTime(res.CA.Certificate().NotAfter))
	}
	printInitJWT(stdout, res)
	for _, s := range res.SVIDs {
		fmt.Fprintf(stdout, "issued %s (expires %s)\n  wrote %s\n  wrote %s\n", s.Identity.ID, formatTime(s.NotAfter), s.CertFile, s.KeyFile)
	}
}

func certsIssue(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	idFlag := flags.String("id", "", "SPIFFE ID of the SVID (required), e.g. spiffe://shop.example/user/bob")
	name := flags.String("name", "", "file name stem: writes NAME.pem and NAME-key.pem (required)")
	var dns listFlag
	flags.Var(&dns, "dns", "DNS SANs, comma-separated; repeatable")
	var ips ipListFlag
	flags.Var(&ips, "ip", "IP SANs, comma-separated; repeatable")
	ttl := flags.Duration("ttl", certs.DefaultSVIDTTL, "lifetime of the SVID (at most 1 year)")
	dir := flags.String("dir", defaultDir, "directory holding the CA; the SVID is written there too")
	if err := parseNoArgs(flags, path, issueUsage, args, stdout); err != nil {
		return err
	}
	switch {
	case *idFlag == "":
		return usageErrorf("%s--id is required (see '%s --help')", where(path), path)
	case *name == "":
		return usageErrorf("%s--name is required (see '%s --help')", where(path), path)
	}
	id, err := parseID(*idFlag)
	if err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}

	ca, err := certs.LoadCA(*dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (run 'meshctl certs init --dir %s' first)", err, *dir)
		}
		return err
	}
	svid, err := ca.Issue(certs.IssueRequest{ID: id, DNSNames: dns, IPAddresses: ips, TTL: *ttl})
	if err != nil {
		return err
	}
	certPath, keyPath, err := certs.WriteSVID(*dir, *name, svid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s (expires %s)\n  wrote %s\n  wrote %s\n", id, formatTime(svid.Certificates[0].NotAfter), certPath, keyPath)
	return nil
}

func certsInspect(_ context.Context, path string, args []string, stdout io.Writer) error {
	return inspectCerts(path, args, os.Stdin, stdout, time.Now())
}

// inspectCerts is certs inspect, reading "-" from stdin; a JWT-SVID is
// verified as of now.
func inspectCerts(path string, args []string, stdin io.Reader, stdout io.Writer, now time.Time) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	bundlePath := flags.String("bundle", "", "trust bundle to verify against (default: bundle.pem next to FILE, or bundle.json for a JWT-SVID, if present)")
	tdName := flags.String("trust-domain", "", "trust domain of the bundle (default: from the bundle's CA certificate)")
	audience := flags.String("audience", "", "JWT-SVID only: the audience to verify it for (default: the token's first aud, as the token says)")
	jwks := flags.Bool("jwks", false, "JWT-SVID only: --bundle is a plain JWK Set of JWT-SVID keys, as the Workload API sends it, not a SPIFFE bundle")
	positional, err := parseFlags(flags, path, inspectUsage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usageErrorf("%swant exactly one FILE, got %d arguments (see '%s --help')", where(path), len(positional), path)
	}
	file := positional[0]
	var td spiffeid.TrustDomain
	if *tdName != "" {
		if td, err = parseTrustDomain(*tdName); err != nil {
			return err
		}
	}
	token, tokenFile, isJWT, err := jwtInput(file, stdin)
	if err != nil {
		return err
	}
	if isJWT { // certs_jwt.go
		return inspectJWT(stdout, jwtInspect{token: token, file: tokenFile, bundlePath: *bundlePath, td: td, audience: *audience, jwks: *jwks}, now)
	}
	if *audience != "" || *jwks {
		return usageErrorf("%s--audience and --jwks are for JWT-SVIDs; %s holds a certificate", where(path), file)
	}

	if *bundlePath == "" {
		candidate := filepath.Join(filepath.Dir(file), certs.BundleFile)
		if _, err := os.Stat(candidate); err == nil {
			*bundlePath = candidate
		}
	}
	var bundle *x509bundle.Bundle
	if *bundlePath != "" {
		if bundle, err = certs.LoadBundle(*bundlePath, td); err != nil {
			return err
		}
	}

	report, err := certs.Inspect(file, bundle)
	if err != nil {
		return err
	}
	if *bundlePath != "" {
		// Name the bundle file, which the report does not know.
		fmt.Fprintf(stdout, "%-17s %s\n", "bundle:", *bundlePath)
	}
	if err := report.Write(stdout); err != nil {
		return err
	}
	if report.Checked && !report.Verified() {
		return fmt.Errorf("%s does not chain to %s", file, *bundlePath)
	}
	return nil
}

// parseNoArgs is parseFlags for commands that take no positional
// arguments.
func parseNoArgs(flags *flag.FlagSet, path, usage string, args []string, stdout io.Writer) error {
	positional, err := parseFlags(flags, path, usage, args, stdout)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("%sunexpected argument %q (see '%s --help')", where(path), positional[0], path)
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
