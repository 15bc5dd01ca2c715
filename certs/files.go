package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/trustmesh/trustmesh/internal/pemfile"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// File names inside a development directory.
const (
	// BundleFile holds the CA certificate, PEM encoded: the trust bundle.
	BundleFile = "bundle.pem"
	// CAKeyFile holds the CA private key, PKCS#8 PEM ("PRIVATE KEY").
	CAKeyFile = "ca-key.pem"
	// IntermediateFile holds an intermediate CA's certificate chain, PEM
	// encoded, the intermediate first, without the root (which is in
	// [BundleFile]). When it is present, [LoadCA] returns the intermediate.
	IntermediateFile = "intermediate.pem"
	// IntermediateKeyFile holds the intermediate CA's private key, PKCS#8
	// PEM ("PRIVATE KEY").
	IntermediateKeyFile = "intermediate-key.pem"
)

// File permissions of written material.
const (
	// PublicFileMode is the mode of certificates and bundles.
	PublicFileMode os.FileMode = 0o644
	// PrivateFileMode is the mode of private keys.
	PrivateFileMode os.FileMode = 0o600
	// DirMode is the mode of directories created for the material.
	DirMode os.FileMode = 0o755
)

// Save writes the CA to dir, creating dir (mode 0755) if needed. A root
// goes to [BundleFile] (the certificate, mode 0644) and [CAKeyFile] (the
// PKCS#8 key, mode 0600); an intermediate goes to [IntermediateFile] (its
// chain without the root, mode 0644) and [IntermediateKeyFile] (mode 0600),
// and its root must be saved to the same directory for [LoadCA] to find it.
// Each file is replaced atomically. The key is written first, so a
// directory with a certificate always has the key that goes with it.
func (ca *CA) Save(dir string) error {
	keyPEM, err := pemfile.MarshalPrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("certs: save CA to %s: %w", dir, err)
	}
	certFile, keyFile, certs := BundleFile, CAKeyFile, []*x509.Certificate{ca.cert}
	if ca.IsIntermediate() {
		certFile, keyFile, certs = IntermediateFile, IntermediateKeyFile, ca.chain
	}
	var certPEM []byte
	for _, cert := range certs {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	if err := pemfile.WriteAtomic(filepath.Join(dir, keyFile), keyPEM, PrivateFileMode); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	if err := pemfile.WriteAtomic(filepath.Join(dir, certFile), certPEM, PublicFileMode); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	return nil
}

// LoadCA reads a CA saved by [CA.Save] from dir. If dir holds an
// [IntermediateFile], the CA is that intermediate: its certificate (the
// first in the file) must match the key in [IntermediateKeyFile] and the
// chain must be signed by a root in [BundleFile] that allows it; the root's
// key is not needed. Otherwise the CA certificate is the certificate in
// [BundleFile] whose public key matches the key in [CAKeyFile]. Either way
// the trust domain comes from the CA certificate's URI SAN. The CA's
// JWT-SVID signing key is read from [JWTKeyFile] when dir has one.
func LoadCA(dir string) (*CA, error) {
	ca, err := loadCA(dir)
	if err == nil {
		err = ca.loadJWT(dir) // its JWT-SVID signing key, if the directory has one (jwt_ca.go)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: load CA from %s: %w", dir, err)
	}
	return ca, nil
}

func loadCA(dir string) (*CA, error) {
	switch _, err := os.Stat(filepath.Join(dir, IntermediateFile)); {
	case err == nil:
		return loadIntermediate(dir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	authorities, err := loadAuthorities(filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	for _, cert := range authorities {
		pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(key.Public()) {
			continue
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("%s: certificate matching %s is not a CA", BundleFile, CAKeyFile)
		}
		td, err := trustDomainOf(cert)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", BundleFile, err)
		}
		return &CA{td: td, cert: cert, key: key, roots: []*x509.Certificate{cert}}, nil
	}
	return nil, fmt.Errorf("%s holds no certificate for the key in %s", BundleFile, CAKeyFile)
}

// loadIntermediate is loadCA for a directory with an [IntermediateFile].
func loadIntermediate(dir string) (*CA, error) {
	chain, err := pemfile.ReadCertificates(filepath.Join(dir, IntermediateFile))
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, IntermediateKeyFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	cert := chain[0]
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s: first certificate does not match the key in %s", IntermediateFile, IntermediateKeyFile)
	}
	for i, c := range chain {
		if !c.IsCA {
			return nil, fmt.Errorf("%s: certificate %d is not a CA", IntermediateFile, i+1)
		}
		if i > 0 {
			if err := chain[i-1].CheckSignatureFrom(c); err != nil {
				return nil, fmt.Errorf("%s: certificate %d is not signed by certificate %d: %w", IntermediateFile, i, i+1, err)
			}
		}
	}
	td, err := trustDomainOf(cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", IntermediateFile, err)
	}
	authorities, err := loadAuthorities(filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, err
	}
	top := chain[len(chain)-1]
	for _, root := range authorities {
		if top.CheckSignatureFrom(root) != nil {
			continue
		}
		if root.MaxPathLen >= 0 && len(chain) > root.MaxPathLen {
			return nil, fmt.Errorf("%s: the root in %s allows %d intermediate CA(s), %s holds %d (recreate the CA with an intermediate)",
				IntermediateFile, BundleFile, root.MaxPathLen, IntermediateFile, len(chain))
		}
		if rootTD, err := trustDomainOf(root); err == nil && rootTD != td {
			return nil, fmt.Errorf("%s: intermediate is for trust domain %q, the root in %s for %q", IntermediateFile, td.Name(), BundleFile, rootTD.Name())
		}
		return &CA{td: td, cert: cert, key: key, chain: chain, roots: []*x509.Certificate{root}}, nil
	}
	return nil, fmt.Errorf("%s is not signed by a root in %s", IntermediateFile, BundleFile)
}

// LoadBundle reads a PEM trust bundle from path. If td is zero, the trust
// domain is taken from the URI SAN of the bundle's first certificate (as set
// by [NewCA]); a bundle without one is an error.
func LoadBundle(path string, td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if !td.IsZero() {
		bundle, err := x509bundle.Load(td, path)
		if err != nil {
			return nil, fmt.Errorf("certs: load bundle %s: %w", path, err)
		}
		return bundle, nil
	}
	authorities, err := loadAuthorities(path)
	if err != nil {
		return nil, fmt.Errorf("certs: load bundle %s: %w", path, err)
	}
	td, err = trustDomainOf(authorities[0])
	if err != nil {
		return nil, fmt.Errorf("certs: load bundle %s: %w", path, err)
	}
	return x509bundle.FromX509Authorities(td, authorities), nil
}

// WriteSVID writes svid to dir as NAME.pem (the certificate chain, leaf
// first, mode 0644) and NAME-key.pem (the PKCS#8 private key, mode 0600),
// creating dir (mode 0755) if needed, and returns both paths. Each file is
// replaced atomically, the key first. name may hold only lowercase letters,
// digits, '.', '_' and '-', and must not start with '.'.
func WriteSVID(dir, name string, svid *x509svid.SVID) (certPath, keyPath string, err error) {
	if err := validateFileName(name); err != nil {
		return "", "", fmt.Errorf("certs: write SVID: %w", err)
	}
	if svid == nil {
		return "", "", errors.New("certs: write SVID: SVID is nil")
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return "", "", fmt.Errorf("certs: write SVID %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return "", "", fmt.Errorf("certs: write SVID: %w", err)
	}
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+"-key.pem")
	if err := pemfile.WriteAtomic(keyPath, keyPEM, PrivateFileMode); err != nil {
		return "", "", fmt.Errorf("certs: write SVID: %w", err)
	}
	if err := pemfile.WriteAtomic(certPath, certPEM, PublicFileMode); err != nil {
		return "", "", fmt.Errorf("certs: write SVID: %w", err)
	}
	return certPath, keyPath, nil
}

// validateFileName checks a file name stem for [WriteSVID].
func validateFileName(name string) error {
	const rule = "only lowercase letters, digits, '.', '_' and '-' are allowed, and it must not start with '.'"
	if name == "" {
		return errors.New("file name is empty")
	}
	if name[0] == '.' {
		return fmt.Errorf("invalid file name %q: %s", name, rule)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid file name %q: %s", name, rule)
		}
	}
	return nil
}

// loadAuthorities reads the certificates of a PEM bundle file whose trust
// domain is not known yet. A file without certificates is an error.
func loadAuthorities(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The trust domain is only a label on the bundle: use the zero value
	// to get at the certificates, then derive the real one from them.
	bundle, err := x509bundle.Parse(spiffeid.TrustDomain{}, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if bundle.Empty() {
		return nil, fmt.Errorf("%s: no certificates found", path)
	}
	return bundle.X509Authorities(), nil
}

// trustDomainOf returns the trust domain named by a CA certificate's URI SAN.
func trustDomainOf(cert *x509.Certificate) (spiffeid.TrustDomain, error) {
	if len(cert.URIs) != 1 {
		return spiffeid.TrustDomain{}, fmt.Errorf("CA certificate has %d URI SANs, want one naming its trust domain", len(cert.URIs))
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("CA certificate URI SAN %q: %w", cert.URIs[0], err)
	}
	return td, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`no PEM "PRIVATE KEY" block found`)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}
