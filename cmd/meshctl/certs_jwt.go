package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
)

// printInitJWT reports what certs init did with the JWT-SVID signing key
// and the SPIFFE bundle.
func printInitJWT(stdout io.Writer, res certs.InitResult) {
	keyPath, bundlePath := filepath.Join(res.Dir, certs.JWTKeyFile), filepath.Join(res.Dir, certs.SPIFFEBundleFile)
	if res.JWTKeyCreated {
		fmt.Fprintf(stdout, "created JWT-SVID signing key %s (ES256)\n  wrote %s\n", res.CA.JWTKeyID(), keyPath)
	}
	if slices.Contains(res.Files, bundlePath) {
		fmt.Fprintf(stdout, "wrote the SPIFFE bundle (x509-svid and jwt-svid keys)\n  wrote %s\n", bundlePath)
	}
}

// jwtInspect is what certs inspect verifies a JWT-SVID with.
type jwtInspect struct {
	token      string
	file       string // the file the token came from, "" for an argument or stdin
	bundlePath string // "" : the default
	td         spiffeid.TrustDomain
	audience   string
	jwks       bool
}

// jwtInput reads the JWT-SVID certs inspect was given, if it was given
// one: "-" (standard input), a file that holds a token rather than PEM, or
// a token as the argument itself.
func jwtInput(arg string, stdin io.Reader) (token, file string, ok bool, err error) {
	if arg == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, maxTokenInput))
		if err != nil {
			return "", "", false, fmt.Errorf("read the JWT-SVID from standard input: %w", err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return "", "", false, errors.New("no JWT-SVID on standard input")
		}
		return token, "", true, nil
	}
	data, err := os.ReadFile(arg)
	switch {
	case err == nil:
		if bytes.Contains(data, []byte("-----BEGIN")) || !looksLikeJWS(strings.TrimSpace(string(data))) {
			return "", "", false, nil // PEM, or anything else: certs.Inspect says what is wrong
		}
		return strings.TrimSpace(string(data)), arg, true, nil
	case looksLikeJWS(arg): // no such file (or a name too long to be one): the token itself
		return arg, "", true, nil
	default:
		return "", "", false, nil // certs.Inspect reports the unreadable file
	}
}

// looksLikeJWS reports whether s has the shape of a compact JWS: three
// base64url parts, the first a JSON object ("eyJ").
func looksLikeJWS(s string) bool {
	if strings.Count(s, ".") != 2 || !strings.HasPrefix(s, "eyJ") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// inspectJWT prints what a JWT-SVID says, then verifies it.
func inspectJWT(stdout io.Writer, in jwtInspect, now time.Time) error {
	if len(in.token) <= identity.MaxJWTSVIDSize {
		writeDecoded(stdout, in.token, now)
	}
	claims := unverifiedClaims(in.token)
	audience, audNote := in.audience, ""
	if audience == "" {
		audience, audNote = firstAudience(claims), " (the token's own aud: pass --audience to check it is for you)"
	}
	bundlePath := in.bundlePath
	if bundlePath == "" {
		bundlePath = defaultJWTBundle(in.file)
	}
	if bundlePath == "" {
		_, err := fmt.Fprintf(stdout, "not verified: no bundle (give --bundle, e.g. %s)\n", filepath.Join(defaultDir, certs.SPIFFEBundleFile))
		return err
	}
	td := in.td
	if td.IsZero() && in.jwks {
		if td = subjectTrustDomain(claims); td.IsZero() {
			return errors.New("--jwks: give --trust-domain (the token names no trust domain in its sub)")
		}
	}
	bundle, err := loadJWTBundle(bundlePath, td, in.jwks)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verify:\n  bundle:   %s (trust domain %s, %d jwt-svid key(s))\n", bundlePath, bundle.TrustDomain().Name(), len(bundle.JWTKeys()))
	for _, why := range bundle.Ignored() {
		fmt.Fprintf(stdout, "  ignored:  %s\n", why)
	}
	fmt.Fprintf(stdout, "  audience: %s%s\n", printable(audience), audNote)
	if audience == "" {
		return errors.New("no audience to verify for: the token has no aud claim, and no --audience was given")
	}
	svid, err := identity.VerifyJWTSVID(in.token, bundle, audience, now)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "OK: JWT-SVID of %s for %s, signed by jwt-svid key %s, expires %s (%s)\n",
		svid.ID, printable(audience), svid.KeyID, formatTime(svid.Expiry), relative(svid.Expiry, now))
	return err
}

// defaultJWTBundle is the SPIFFE bundle next to the token's file, else the
// development directory's, if there is one.
func defaultJWTBundle(tokenFile string) string {
	var candidates []string
	if tokenFile != "" {
		candidates = append(candidates, filepath.Join(filepath.Dir(tokenFile), certs.SPIFFEBundleFile))
	}
	for _, c := range append(candidates, filepath.Join(defaultDir, certs.SPIFFEBundleFile)) {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return ""
}

// loadJWTBundle reads the bundle to verify a JWT-SVID against: a SPIFFE
// bundle, or with jwks a plain JWK Set of JWT-SVID keys for td.
func loadJWTBundle(path string, td spiffeid.TrustDomain, jwks bool) (*identity.Bundle, error) {
	if !jwks {
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, fmt.Errorf("%s is a PEM bundle, which holds no JWT-SVID keys: give the SPIFFE bundle (%s)", path, certs.SPIFFEBundleFile)
		}
		return certs.LoadSPIFFEBundle(path, td)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load JWT bundle: %w", err)
	}
	b, err := identity.ParseJWTBundle(td, data)
	if err != nil {
		return nil, fmt.Errorf("load JWT bundle %s: %w", path, err)
	}
	return b, nil
}

// unverifiedClaims decodes the claims of token, or returns nil.
func unverifiedClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	claims, err := decodeSegment(parts[1])
	if err != nil {
		return nil
	}
	return claims
}

// firstAudience is the first value of the aud claim, or "".
func firstAudience(claims map[string]any) string {
	switch aud := claims["aud"].(type) {
	case string:
		return aud
	case []any:
		if len(aud) > 0 {
			s, _ := aud[0].(string)
			return s
		}
	}
	return ""
}

// subjectTrustDomain is the trust domain of the sub claim, or zero.
func subjectTrustDomain(claims map[string]any) spiffeid.TrustDomain {
	sub, _ := claims["sub"].(string)
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return spiffeid.TrustDomain{}
	}
	return id.TrustDomain()
}
