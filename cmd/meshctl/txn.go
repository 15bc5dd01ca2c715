package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/txn"
)

const txnUsage = `meshctl txn works with transaction tokens (draft-ietf-oauth-transaction-tokens):
short-lived JWTs that an edge workload mints with its own SVID key for each
call entering the mesh, that carry who the call is for (sub) and travel
unchanged in the txn-token header along the call chain.

Usage:
  meshctl txn inspect TOKEN|- --bundle FILE [--minter ID ...] [--audience TD]

Run 'meshctl txn inspect --help' for details.
`

const txnInspectUsage = `Usage: meshctl txn inspect TOKEN|- --bundle FILE [--minter ID ...] [--audience TD]

Decodes a transaction token and prints its header and claims (as the token
states them, before any check), then verifies it as a workload of the mesh
does: the x5c certificate chain against the trust bundle in --bundle under
the X.509-SVID rules, the signature with the chain's leaf, that the signer
is the token's iss and req_wl and one of the --minter IDs, that the aud
claim names --audience, and the times (5s of leeway). Prints OK and who the
transaction is for, or exits 1 with the one-line reason (the same a
workload would refuse the call with).

TOKEN "-" reads the token from standard input, which keeps it out of the
shell history and the process list. A token is a bearer credential for its
short life: do not paste it into tickets or logs.

--minter names a workload allowed to mint tokens (repeat it, or separate
IDs with commas), like the policy's txn_issuers. Without --minter any signer
whose chain verifies is accepted, and the output says so.

--audience is the trust domain the token must be for (its aud claim is
that trust domain's SPIFFE ID, spiffe://TD). By default it is the trust
domain of the bundle, named by its CA certificate's URI SAN; a bundle whose
CA names none is taken to be --audience's.

Example (alice's token, as orders would verify it):
  meshctl txn inspect --bundle certs/dev/bundle.pem \
    --minter spiffe://shop.example/ns/shop/sa/gateway - < token.txt
`

// maxTokenInput bounds how much of standard input txn inspect reads: more
// than a verifier accepts, so that it can say how long the token is.
const maxTokenInput = 1 << 20

// txnCommand is "meshctl txn".
func txnCommand() command {
	return command{
		name:  "txn",
		usage: txnUsage,
		subs:  []command{{name: "inspect", run: txnInspect}},
	}
}

func txnInspect(_ context.Context, path string, args []string, stdout io.Writer) error {
	return inspectTxn(path, args, os.Stdin, stdout, time.Now())
}

// inspectTxn is txn inspect, reading "-" from stdin and verifying as of now.
func inspectTxn(path string, args []string, stdin io.Reader, stdout io.Writer, now time.Time) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	bundlePath := flags.String("bundle", "", "PEM trust bundle to verify the signer's chain against (required), e.g. certs/dev/bundle.pem")
	var minterFlags listFlag
	flags.Var(&minterFlags, "minter", "SPIFFE ID of a workload allowed to mint (repeatable; default: any signer whose chain verifies)")
	audienceFlag := flags.String("audience", "", "trust domain the token must be for (default: the bundle's)")
	positional, err := parseFlags(flags, path, txnInspectUsage, args, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(positional) != 1:
		return usageErrorf("%swant exactly one TOKEN (or - for standard input), got %d arguments (see '%s --help')", where(path), len(positional), path)
	case *bundlePath == "":
		return usageErrorf("%s--bundle is required (see '%s --help')", where(path), path)
	}
	var audience spiffeid.TrustDomain
	if *audienceFlag != "" {
		if audience, err = spiffeid.TrustDomainFromString(*audienceFlag); err != nil {
			return usageErrorf("--audience %q: %v", *audienceFlag, err)
		}
	}
	minters := make([]spiffeid.ID, 0, len(minterFlags))
	for _, s := range minterFlags {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return usageErrorf("--minter %q: %v", s, err)
		}
		minters = append(minters, id)
	}

	raw := positional[0]
	if raw == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, maxTokenInput))
		if err != nil {
			return fmt.Errorf("read the token from standard input: %w", err)
		}
		raw = string(data)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return errors.New("no token (the argument, or standard input for -, is empty)")
	}

	bundle, err := certs.LoadBundle(*bundlePath, spiffeid.TrustDomain{})
	if err != nil && !audience.IsZero() {
		bundle, err = certs.LoadBundle(*bundlePath, audience)
	}
	if err != nil {
		return err
	}
	if audience.IsZero() {
		audience = bundle.TrustDomain()
	}
	matcher, minterNote := spiffeid.MatchAny(), "any signer (no --minter)"
	if len(minters) > 0 {
		matcher = spiffeid.MatchOneOf(minters...)
		names := make([]string, len(minters))
		for i, id := range minters {
			names[i] = id.String()
		}
		minterNote = strings.Join(names, ", ")
	}

	if len(raw) <= txn.MaxSize {
		writeDecoded(stdout, raw, now)
	}
	fmt.Fprintf(stdout, "verify:\n  bundle:   %s (trust domain %s)\n  audience: %s\n  minters:  %s\n", *bundlePath, bundle.TrustDomain(), audience.IDString(), minterNote)

	v, err := txn.NewVerifier(bundle, audience, matcher, txn.WithCacheSize(0))
	if err != nil {
		return err
	}
	tok, err := v.Verify(raw, now)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "OK: transaction %s for %s, minted by %s, expires %s (%s)\n",
		tok.ID(), tok.Subject(), tok.Minter(), formatTime(tok.Expiry()), relative(tok.Expiry(), now))
	return err
}

// writeDecoded prints the header and the claims of raw as they are, or
// says why a part cannot be decoded. Nothing here is verified yet.
func writeDecoded(w io.Writer, raw string, now time.Time) {
	parts := strings.Split(raw, ".")
	fmt.Fprintln(w, "header:")
	header, err := decodeSegment(parts[0])
	if err != nil {
		fmt.Fprintf(w, "  (cannot decode: %v)\n", err)
	} else {
		writeFields(w, header, now)
	}
	fmt.Fprintln(w, "claims (not verified yet):")
	if len(parts) < 2 {
		fmt.Fprintln(w, "  (none: not a compact JWS)")
		return
	}
	claims, err := decodeSegment(parts[1])
	if err != nil {
		fmt.Fprintf(w, "  (cannot decode: %v)\n", err)
		return
	}
	writeFields(w, claims, now)
}

// decodeSegment decodes one base64url part of a compact JWS into a JSON
// object.
func decodeSegment(seg string) (map[string]any, error) {
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("not base64url: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return m, nil
}

// writeFields prints a JSON object one field a line, in key order: times
// also as dates, the x5c chain as a count, everything else as it is
// (strings bare when printable, other values as compact JSON).
func writeFields(w io.Writer, m map[string]any, now time.Time) {
	keys := make([]string, 0, len(m))
	width := 0
	for k := range m {
		keys = append(keys, k)
		width = max(width, len(printable(k)))
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-*s %s\n", width+1, printable(k)+":", describeField(k, m[k], now))
	}
}

func describeField(key string, v any, now time.Time) string {
	switch key {
	case "iat", "exp", "nbf":
		if f, ok := v.(float64); ok {
			t := time.Unix(int64(f), 0)
			return fmt.Sprintf("%d (%s, %s)", int64(f), formatTime(t), relative(t, now))
		}
	case "x5c":
		if chain, ok := v.([]any); ok {
			return fmt.Sprintf("%d certificate(s), the signer's chain: leaf %s", len(chain), describeLeaf(chain))
		}
	}
	if s, ok := v.(string); ok {
		return printable(s)
	}
	data, err := json.Marshal(v) // escapes control characters
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(data)
}

// describeLeaf names the first certificate of an x5c header by the SPIFFE
// ID it claims and its expiry, before it is verified.
func describeLeaf(chain []any) string {
	if len(chain) == 0 {
		return "(none)"
	}
	enc, _ := chain[0].(string)
	der, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "(not base64)"
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "(not a certificate)"
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return fmt.Sprintf("serial %s (no SPIFFE ID: %v)", cert.SerialNumber, err)
	}
	return fmt.Sprintf("%s, expires %s", id, formatTime(cert.NotAfter))
}

// printable returns s as it is when every rune of it is printable, else
// quoted: a token may hold terminal escape sequences.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// relative says how far t is from now, e.g. "in 58s" or "2m0s ago".
func relative(t, now time.Time) string {
	d := t.Sub(now).Truncate(time.Second)
	if d < 0 {
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}
