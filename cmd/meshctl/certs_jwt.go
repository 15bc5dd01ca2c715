package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/trustmesh/trustmesh/certs"
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
