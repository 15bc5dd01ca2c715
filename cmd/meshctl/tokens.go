package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"github.com/trustmesh/trustmesh/internal/pemfile"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/trustmesh/trustmesh/tokens"
)

// Token lifetimes: development tokens are short-lived.
const (
	defaultTokenTTL = 15 * time.Minute
	maxTokenTTL     = 24 * time.Hour
)

// defaultAudience is who the sample mesh's tokens are for: its gateway.
const defaultAudience = "spiffe://shop.example/ns/shop/sa/gateway"

const tokensUsage = `meshctl tokens mints development access tokens bound to a client
certificate (RFC 8705): JWTs whose cnf claim holds the SHA-256 thumbprint of
the certificate, so that only a caller presenting that certificate can use
them. The gateway of the sample mesh requires one for the methods whose
policy rule says require_token: true.

The issuer's key lives next to the development PKI (default certs/dev):
token-key.pem (private, ES256) and token-jwks.json (public, what the gateway
reads).

Usage:
  meshctl tokens init   [--dir certs/dev] [--force]
  meshctl tokens issue  --cert FILE [--dir certs/dev] [--ttl 15m] [--aud AUDIENCE] [--issuer trustmesh-dev]

Run 'meshctl tokens <subcommand> --help' for details.
`

const tokensInitUsage = `Usage: meshctl tokens init [--dir certs/dev] [--force]

Writes a development token issuer's key to --dir: token-key.pem (a new
ECDSA P-256 private key, mode 0600) and token-jwks.json (its public key as a
JSON Web Key Set, for verifiers). A key already in --dir is kept and its
JWKS written again; --force replaces it (tokens signed with the old key stop
verifying).
`

const tokensIssueUsage = `Usage: meshctl tokens issue --cert FILE [--dir certs/dev] [--ttl 15m] [--aud AUDIENCE] [--issuer trustmesh-dev]

Prints a token for the holder of the certificate in --cert (the first one
in the file), signed with the key in --dir (see 'meshctl tokens init'): its
sub is the certificate's SPIFFE ID, its cnf x5t#S256 the certificate's
thumbprint, its aud --aud (default the sample mesh's gateway) and it expires
after --ttl (at most 24h).

Example (grpcurl with alice's certificate and a token bound to it):
  grpcurl -cacert certs/dev/bundle.pem -cert certs/dev/alice.pem -key certs/dev/alice-key.pem \
    -H "authorization: Bearer $(meshctl tokens issue --cert certs/dev/alice.pem)" ...
`

func tokensInit(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	dir := flags.String("dir", defaultDir, "directory to write to")
	force := flags.Bool("force", false, "replace an existing key")
	if err := parseNoArgs(flags, path, tokensInitUsage, args, stdout); err != nil {
		return err
	}
	res, err := tokens.InitDev(*dir, *force)
	if err != nil {
		return err
	}
	if res.Created {
		fmt.Fprintf(stdout, "created token signing key %s in %s\n  wrote %s\n", res.KeyID, *dir, res.KeyFile)
	} else {
		fmt.Fprintf(stdout, "kept existing token signing key %s in %s (--force replaces it)\n", res.KeyID, *dir)
	}
	_, err = fmt.Fprintf(stdout, "  wrote %s\n", res.JWKSFile)
	return err
}

func tokensIssue(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	certFile := flags.String("cert", "", "PEM file of the client certificate to bind the token to (required), e.g. certs/dev/alice.pem")
	dir := flags.String("dir", defaultDir, "directory holding token-key.pem")
	ttl := flags.Duration("ttl", defaultTokenTTL, "lifetime of the token (at most 24h)")
	aud := flags.String("aud", defaultAudience, "audience (aud): the service the token is for")
	issuer := flags.String("issuer", tokens.DevIssuer, "issuer (iss) the token names; the verifier must expect it")
	if err := parseNoArgs(flags, path, tokensIssueUsage, args, stdout); err != nil {
		return err
	}
	switch {
	case *certFile == "":
		return usageErrorf("%s--cert is required (see '%s --help')", where(path), path)
	case *ttl <= 0:
		return usageErrorf("--ttl %s: must be positive", *ttl)
	case *ttl > maxTokenTTL:
		return usageErrorf("--ttl %s: must be at most %s", *ttl, maxTokenTTL)
	case *aud == "":
		return usageErrorf("--aud must not be empty")
	case *issuer == "":
		return usageErrorf("--issuer must not be empty")
	}
	leaf, err := readLeaf(*certFile)
	if err != nil {
		return err
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%s expired at %s: a token bound to it cannot be used", *certFile, formatTime(leaf.NotAfter))
	}
	keyFile := filepath.Join(*dir, tokens.KeyFile)
	iss, err := tokens.NewIssuer(*issuer, keyFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (run 'meshctl tokens init --dir %s' first)", err, *dir)
		}
		return err
	}
	raw, err := iss.Issue(leaf, *aud, *ttl, now)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, raw)
	return err
}

// readLeaf returns the first certificate of a PEM file.
func readLeaf(path string) (*x509.Certificate, error) {
	chain, err := pemfile.ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	return chain[0], nil
}
