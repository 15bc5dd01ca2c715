package pemfile_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/trustmesh/trustmesh/internal/pemfile"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data, err := pemfile.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "key.pem")
	if err := pemfile.WriteAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", info.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only key.pem (no temporary file left)", len(entries))
	}

	pki := testpki.New(t, "shop.example")
	svid := pki.SVID(t, "spiffe://shop.example/x")
	certPEM, _, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "cert.pem")
	if err := pemfile.WriteAtomic(certPath, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	chain, err := pemfile.ReadCertificates(certPath)
	if err != nil || len(chain) != 1 || !chain[0].Equal(svid.Certificates[0]) {
		t.Fatalf("ReadCertificates = %v, %v", chain, err)
	}
	if _, err := pemfile.ReadCertificates(path); err == nil || err.Error() != path+": no PEM CERTIFICATE block found" {
		t.Errorf("a key file read as certificates: %v", err)
	}
}
