package certs_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
)

func TestInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs", "dev")
	res, err := devInit(dir, certs.InitOptions{TTL: 2 * time.Hour, Now: t0, ExtraDNSNames: []string{"orders.shop.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CACreated || res.Dir != dir || res.CA.TrustDomain() != shop {
		t.Errorf("result: CACreated = %v, Dir = %q, TrustDomain = %v; want true, %q, shop.example", res.CACreated, res.Dir, res.CA.TrustDomain(), dir)
	}

	wantFiles := map[string]os.FileMode{"bundle.pem": 0o644, "ca-key.pem": 0o600, "jwt-key.pem": 0o600, "bundle.json": 0o644}
	for _, name := range []string{"gateway", "orders", "inventory", "payments", "admin", "alice"} {
		wantFiles[name+".pem"] = 0o644
		wantFiles[name+"-key.pem"] = 0o600
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(wantFiles) {
		t.Errorf("dir has %d entries, want %d (no temp files left behind)", len(entries), len(wantFiles))
	}
	for name, mode := range wantFiles {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := info.Mode().Perm(); got != mode {
			t.Errorf("%s mode = %v, want %v", name, got, mode)
		}
	}
	if len(res.Files) != len(wantFiles) {
		t.Errorf("result lists %d files, want %d", len(res.Files), len(wantFiles))
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("dir mode: %v, %v; want 0755", info.Mode().Perm(), err)
	}

	bundle, err := x509bundle.Load(shop, filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	testCases := []struct {
		name string
		id   string
		dns  []string
		ips  []net.IP
	}{
		{"gateway", "spiffe://shop.example/ns/shop/sa/gateway", []string{"gateway", "localhost", "orders.shop.internal"}, loopback},
		{"orders", "spiffe://shop.example/ns/shop/sa/orders", []string{"orders", "localhost", "orders.shop.internal"}, loopback},
		{"inventory", "spiffe://shop.example/ns/shop/sa/inventory", []string{"inventory", "localhost", "orders.shop.internal"}, loopback},
		{"payments", "spiffe://shop.example/ns/shop/sa/payments", []string{"payments", "localhost", "orders.shop.internal"}, loopback},
		{"admin", "spiffe://shop.example/ns/ops/sa/admin", nil, nil},
		{"alice", "spiffe://shop.example/user/alice", nil, nil},
	}
	for i, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certFile, keyFile := filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+"-key.pem")
			svid, err := x509svid.Load(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			id, _, err := x509svid.Verify(svid.Certificates, bundle, x509svid.WithTime(t0))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.String() != tc.id {
				t.Errorf("ID = %v, want %v", id, tc.id)
			}
			leaf := svid.Certificates[0]
			checkLeaf(t, leaf, tc.dns, tc.ips)
			if got, want := leaf.NotAfter, t0.Add(2*time.Hour); !got.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", got, want)
			}
			w := res.SVIDs[i]
			if w.Identity.Name != tc.name || w.CertFile != certFile || w.KeyFile != keyFile || !w.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("result SVIDs[%d] = %+v, want %s in %s", i, w, tc.name, dir)
			}
		})
	}
}

func TestInitKeepsCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := devInit(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(dir, "bundle.pem")
	first := readFile(t, bundlePath)
	oldSVID := readFile(t, filepath.Join(dir, "orders.pem"))

	res, err := devInit(dir, certs.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.CACreated {
		t.Error("second Init created a CA, want the existing one kept")
	}
	if slices.Contains(res.Files, bundlePath) {
		t.Errorf("second Init lists %s as written", bundlePath)
	}
	if !bytes.Equal(readFile(t, bundlePath), first) {
		t.Error("second Init changed bundle.pem")
	}
	if bytes.Equal(readFile(t, filepath.Join(dir, "orders.pem")), oldSVID) {
		t.Error("second Init did not reissue orders.pem")
	}
	verifies(t, dir, "orders")

	res, err = devInit(dir, certs.InitOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CACreated {
		t.Error("Init with Force kept the CA, want a new one")
	}
	if bytes.Equal(readFile(t, bundlePath), first) {
		t.Error("Init with Force kept bundle.pem")
	}
	verifies(t, dir, "orders")
}

func TestInitOtherTrustDomain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := devInit(dir, certs.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	other := spiffeid.RequireTrustDomainFromString("other.example")
	_, err := devInit(dir, certs.InitOptions{TrustDomain: other})
	want := `certs: init ` + dir + `: existing CA is for trust domain "shop.example", not "other.example" (set Force to replace it)`
	if err == nil || err.Error() != want {
		t.Errorf("Init error:\n got %v\nwant %s", err, want)
	}

	res, err := devInit(dir, certs.InitOptions{TrustDomain: other, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.SVIDs[0].Identity.ID.String(); got != "spiffe://other.example/ns/shop/sa/gateway" {
		t.Errorf("first SVID ID = %s, want spiffe://other.example/ns/shop/sa/gateway", got)
	}
}

func TestDevWorkload(t *testing.T) {
	t.Parallel()
	id := spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/api")
	got := certs.DevWorkload("api", id)
	if got.Name != "api" || got.ID != id || !slices.Equal(got.DNSNames, []string{"api", "localhost"}) ||
		len(got.IPAddresses) != 1 || !got.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("DevWorkload = %+v", got)
	}
}

// TestInitChecksFirst gives Init a wrong trust domain or identity: it
// fails with a message naming the problem and writes nothing, not even the
// CA.
func TestInitChecksFirst(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	api := certs.DevWorkload("api", spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/api"))
	testCases := []struct {
		name       string
		td         spiffeid.TrustDomain
		identities []certs.Identity
		want       string // after "certs: init DIR: "
	}{
		{"no trust domain", spiffeid.TrustDomain{}, []certs.Identity{api}, "no trust domain (set InitOptions.TrustDomain)"},
		{"other trust domain", td, []certs.Identity{api, {Name: "bob", ID: spiffeid.RequireFromString("spiffe://other.example/user/bob")}},
			`identity "bob": SPIFFE ID spiffe://other.example/user/bob is not in trust domain "example.org"`},
		{"no ID", td, []certs.Identity{{Name: "bob"}}, `identity "bob": no SPIFFE ID`},
		{"no path", td, []certs.Identity{{Name: "td", ID: td.ID()}}, `identity "td": SPIFFE ID spiffe://example.org has no path`},
		{"twice", td, []certs.Identity{api, api}, `identity "api": listed twice`},
		{"bad name", td, []certs.Identity{{Name: "../api", ID: api.ID}},
			`identity: invalid file name "../api": only lowercase letters, digits, '.', '_' and '-' are allowed, and it must not start with '.'`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "dev")
			_, err := certs.Init(dir, certs.InitOptions{TrustDomain: tc.td, Identities: tc.identities})
			if want := "certs: init " + dir + ": " + tc.want; err == nil || err.Error() != want {
				t.Errorf("Init error:\n got %v\nwant %s", err, want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Init created %s: %v", dir, err)
			}
		})
	}
}

// TestInitNoIdentities: without identities Init writes the CA alone (and
// its JWT-SVID signing key, and the bundle in the SPIFFE format).
func TestInitNoIdentities(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := certs.Init(dir, certs.InitOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "jwt-key.pem"), filepath.Join(dir, "bundle.json")}
	if !res.CACreated || !res.JWTKeyCreated || len(res.SVIDs) != 0 || !slices.Equal(res.Files, want) {
		t.Errorf("result: CACreated %v, SVIDs %v, Files %v; want a CA alone", res.CACreated, res.SVIDs, res.Files)
	}
}

// TestInitLeavesIdentitiesAlone: ExtraDNSNames go into the SVIDs, not into
// the caller's slices.
func TestInitLeavesIdentitiesAlone(t *testing.T) {
	t.Parallel()
	idents := sampleIdentities(shop)
	if _, err := certs.Init(t.TempDir(), certs.InitOptions{TrustDomain: shop, Identities: idents, ExtraDNSNames: []string{"extra"}}); err != nil {
		t.Fatal(err)
	}
	if got := idents[0].DNSNames; !slices.Equal(got, []string{"gateway", "localhost"}) {
		t.Errorf("caller's DNS names became %v", got)
	}
}

// sampleIdentities is a mesh's worth of identities in td, in the shape of
// the sample mesh's: four workloads, an operator and a person.
func sampleIdentities(td spiffeid.TrustDomain) []certs.Identity {
	var idents []certs.Identity
	for _, name := range []string{"gateway", "orders", "inventory", "payments"} {
		idents = append(idents, certs.DevWorkload(name, spiffeid.RequireFromSegments(td, "ns", "shop", "sa", name)))
	}
	return append(idents,
		certs.Identity{Name: "admin", ID: spiffeid.RequireFromSegments(td, "ns", "ops", "sa", "admin")},
		certs.Identity{Name: "alice", ID: spiffeid.RequireFromSegments(td, "user", "alice")},
	)
}

// devInit is certs.Init with trust domain shop.example, unless opts names
// another, and [sampleIdentities] in it, unless opts lists identities.
func devInit(dir string, opts certs.InitOptions) (certs.InitResult, error) {
	if opts.TrustDomain.IsZero() {
		opts.TrustDomain = shop
	}
	if opts.Identities == nil {
		opts.Identities = sampleIdentities(opts.TrustDomain)
	}
	return certs.Init(dir, opts)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifies checks that NAME.pem in dir verifies against dir/bundle.pem.
func verifies(t *testing.T, dir, name string) {
	t.Helper()
	bundle, err := certs.LoadBundle(filepath.Join(dir, "bundle.pem"), spiffeid.TrustDomain{})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.Load(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Errorf("%s.pem does not verify against bundle.pem: %v", name, err)
	}
}
