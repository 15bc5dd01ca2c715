package certs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// LoadBundleSet reads the trust bundles of several trust domains from dir,
// one PEM file per trust domain named TRUST_DOMAIN.pem (for example
// example.org.pem and partner.example.pem): the federation of this mesh
// with others. Entries whose names start with '.' (temporary files of
// atomic writes, Kubernetes' ..data links) and directories are skipped;
// every other entry must be a TRUST_DOMAIN.pem file holding at least one
// certificate, and a certificate with a SPIFFE URI SAN must name that
// trust domain. A directory without bundle files gives an empty set.
func LoadBundleSet(dir string) (*x509bundle.Set, error) {
	set, _, err := loadBundleSet(dir)
	if err != nil {
		return nil, fmt.Errorf("certs: load bundle set %s: %w", dir, err)
	}
	return set, nil
}

// loadBundleSet is [LoadBundleSet] that also returns the raw contents of
// the files read, in name order, for change detection.
func loadBundleSet(dir string) (*x509bundle.Set, []byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	set := x509bundle.NewSet()
	var raw []byte
	for _, e := range entries { // sorted by name
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path) // follows symlinks
		if err != nil {
			return nil, nil, err
		}
		if info.IsDir() {
			continue
		}
		stem, ok := strings.CutSuffix(name, ".pem")
		if !ok {
			return nil, nil, fmt.Errorf("%s: want TRUST_DOMAIN.pem files only", name)
		}
		td, err := spiffeid.TrustDomainFromString(stem)
		if err != nil || strings.Contains(stem, "://") {
			return nil, nil, fmt.Errorf("%s: file name is not TRUST_DOMAIN.pem: %q is not a trust domain name", name, stem)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		bundle, err := x509bundle.Parse(td, data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if bundle.Empty() {
			return nil, nil, fmt.Errorf("%s: no certificates found", name)
		}
		for i, cert := range bundle.X509Authorities() {
			for _, u := range cert.URIs {
				if other, err := spiffeid.TrustDomainFromURI(u); err == nil && u.Scheme == "spiffe" && other != td {
					return nil, nil, fmt.Errorf("%s: certificate %d is for trust domain %q", name, i+1, other.Name())
				}
			}
		}
		set.Add(bundle)
		raw = slices.Concat(raw, []byte(name), []byte{0}, data, []byte{0})
	}
	return set, raw, nil
}
