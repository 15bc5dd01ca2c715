package certs_test

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
)

func TestIntermediate(t *testing.T) {
	t.Parallel()
	root := newCA(t, certs.WithMaxPathLen(1))
	inter, err := root.NewIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	if !inter.IsIntermediate() || root.IsIntermediate() {
		t.Errorf("IsIntermediate: root %v, intermediate %v", root.IsIntermediate(), inter.IsIntermediate())
	}
	if got := inter.Certificate(); !got.IsCA || got.MaxPathLen != 0 || !got.MaxPathLenZero || got.CheckSignatureFrom(root.Certificate()) != nil {
		t.Errorf("intermediate certificate: CA %v, MaxPathLen %d, signed by root: %v", got.IsCA, got.MaxPathLen, got.CheckSignatureFrom(root.Certificate()))
	}
	if inter.Certificate().NotAfter.After(root.Certificate().NotAfter) {
		t.Error("intermediate outlives the root")
	}
	// The bundle holds only the root.
	if !inter.Bundle().Equal(root.Bundle()) || len(inter.Bundle().X509Authorities()) != 1 {
		t.Error("intermediate's bundle is not the root's")
	}

	svid, err := inter.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(ordersID)})
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(inter.Certificate()) {
		t.Fatalf("SVID chain has %d certificates, want leaf + intermediate", len(svid.Certificates))
	}
	for _, role := range []identity.Role{identity.Client, identity.Server} {
		if _, err := identity.Verify(svid.Certificates, root.Bundle(), role, time.Time{}); err != nil {
			t.Errorf("%s: leaf + intermediate against the root only: %v", role, err)
		}
	}
	// Without the intermediate, the leaf does not chain to the root.
	if _, err := identity.Verify(svid.Certificates[:1], root.Bundle(), identity.Client, time.Time{}); err == nil {
		t.Error("leaf alone verified against the root")
	}
}

func TestIntermediateRefused(t *testing.T) {
	t.Parallel()
	// A root made without room for an intermediate refuses to sign one ...
	root := newCA(t)
	_, err := root.NewIntermediate()
	want := "certs: new intermediate CA for shop.example: the CA certificate allows no further intermediate (path length 0); create the root with WithMaxPathLen(1)"
	if err == nil || err.Error() != want {
		t.Errorf("NewIntermediate on a path length 0 root:\n got %v\nwant %s", err, want)
	}
	// ... and an intermediate, which has path length 0, too.
	inter, err := newCA(t, certs.WithMaxPathLen(1)).NewIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inter.NewIntermediate(); err == nil {
		t.Error("an intermediate signed another intermediate")
	}

	// Peers refuse a chain through an intermediate that the root does not
	// allow: sign one by hand with the path length 0 root.
	template := *inter.Certificate()
	template.SerialNumber = nil
	sneaky, err := root.Sign(&template, inter.Certificate().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := inter.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(ordersID)})
	if err != nil {
		t.Fatal(err)
	}
	chain := append(leaf.Certificates[:1:1], sneaky)
	if _, err := identity.Verify(chain, root.Bundle(), identity.Client, time.Time{}); err == nil ||
		!strings.Contains(err.Error(), "too many intermediates") {
		t.Errorf("chain through a forbidden intermediate: %v", err)
	}
}

func TestSaveLoadIntermediate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := newCA(t, certs.WithMaxPathLen(1))
	inter, err := root.NewIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := inter.Save(dir); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"intermediate.pem": 0o644, "intermediate-key.pem": 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	// The root key is not needed to issue from the intermediate.
	if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	loaded, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.IsIntermediate() || !loaded.Certificate().Equal(inter.Certificate()) || !loaded.Bundle().Equal(root.Bundle()) {
		t.Fatal("LoadCA did not return the intermediate with the root as its bundle")
	}
	svid, err := loaded.Issue(certs.IssueRequest{ID: spiffeid.RequireFromString(ordersID)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Verify(svid.Certificates, root.Bundle(), identity.Server, time.Time{}); err != nil {
		t.Error(err)
	}

	// An intermediate from another root.
	other := newCA(t, certs.WithMaxPathLen(1))
	if err := other.Save(dir); err != nil {
		t.Fatal(err)
	}
	_, err = certs.LoadCA(dir)
	if want := "certs: load CA from " + dir + ": intermediate.pem is not signed by a root in bundle.pem"; err == nil || err.Error() != want {
		t.Errorf("foreign intermediate:\n got %v\nwant %s", err, want)
	}
	// An intermediate under a root that does not allow one.
	strict := newCA(t)
	if err := strict.Save(dir); err != nil {
		t.Fatal(err)
	}
	template := *inter.Certificate()
	template.SerialNumber = nil
	sneaky, err := strict.Sign(&template, inter.Certificate().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "intermediate.pem"), pemCert(sneaky.Raw))
	_, err = certs.LoadCA(dir)
	if want := "certs: load CA from " + dir + ": intermediate.pem: the root in bundle.pem allows 0 intermediate CA(s), intermediate.pem holds 1 (recreate the CA with an intermediate)"; err == nil || err.Error() != want {
		t.Errorf("intermediate under a path length 0 root:\n got %v\nwant %s", err, want)
	}
	// A key that does not match.
	writeFile(t, filepath.Join(dir, "intermediate-key.pem"), readFile(t, filepath.Join(dir, "intermediate-key.pem"))[:0])
	if _, err := certs.LoadCA(dir); err == nil || !strings.Contains(err.Error(), "intermediate-key.pem") {
		t.Errorf("bad intermediate key: %v", err)
	}
}

func TestInitIntermediate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := devInit(dir, certs.InitOptions{Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CACreated || !res.IntermediateCreated || !res.CA.IsIntermediate() {
		t.Fatalf("result: CACreated %v, IntermediateCreated %v, intermediate %v", res.CACreated, res.IntermediateCreated, res.CA.IsIntermediate())
	}
	wantFiles := []string{"ca-key.pem", "bundle.pem", "jwt-key.pem", "bundle.json", "intermediate-key.pem", "intermediate.pem"}
	for i, f := range wantFiles {
		if res.Files[i] != filepath.Join(dir, f) {
			t.Errorf("Files[%d] = %s, want %s", i, res.Files[i], f)
		}
	}
	bundle, err := certs.LoadBundle(filepath.Join(dir, "bundle.pem"), spiffeid.TrustDomain{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bundle.X509Authorities()); n != 1 {
		t.Errorf("bundle.pem holds %d certificates, want the root only", n)
	}
	for _, name := range []string{"gateway", "orders", "inventory", "payments", "admin", "alice"} {
		svid, err := x509svid.Load(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if len(svid.Certificates) != 2 {
			t.Errorf("%s.pem holds %d certificates, want leaf + intermediate", name, len(svid.Certificates))
		}
		if _, err := identity.Verify(svid.Certificates, bundle, identity.Client, time.Time{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Running again keeps both CAs.
	again, err := devInit(dir, certs.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.CACreated || again.IntermediateCreated || !again.CA.Certificate().Equal(res.CA.Certificate()) {
		t.Error("second Init did not keep the intermediate")
	}

	// A FileSource serves the leaf + intermediate chain.
	src := newFileSource(t, certs.FileSourceConfig{
		CertFile:   filepath.Join(dir, "orders.pem"),
		KeyFile:    filepath.Join(dir, "orders-key.pem"),
		BundleFile: filepath.Join(dir, "bundle.pem"),
	})
	svid, err := src.GetX509SVID()
	if err != nil || len(svid.Certificates) != 2 {
		t.Fatalf("FileSource SVID: %v, %v", svid, err)
	}

	// Force without Intermediate goes back to a single root.
	forced, err := devInit(dir, certs.InitOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if forced.CA.IsIntermediate() {
		t.Error("Init with Force kept an intermediate")
	}
	if _, err := os.Stat(filepath.Join(dir, "intermediate.pem")); !os.IsNotExist(err) {
		t.Errorf("intermediate.pem left behind: %v", err)
	}

	// That root has no room for an intermediate.
	_, err = devInit(dir, certs.InitOptions{Intermediate: true})
	if err == nil || !strings.HasPrefix(err.Error(), "certs: init "+dir+": the existing CA was created without room for an intermediate (set Force to replace it)") {
		t.Errorf("Intermediate on a kept single root: %v", err)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := devInit(dir, certs.InitOptions{Intermediate: true, ExtraDNSNames: []string{"orders.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, s := range res.SVIDs {
		before[s.Identity.Name] = s.Serial
	}

	src := newFileSource(t, certs.FileSourceConfig{
		CertFile:   filepath.Join(dir, "orders.pem"),
		KeyFile:    filepath.Join(dir, "orders-key.pem"),
		BundleFile: filepath.Join(dir, "bundle.pem"),
		Debounce:   20 * time.Millisecond,
	})

	rotated, err := certs.Rotate(dir, []string{"gateway", "orders", "inventory", "payments"}, certs.RotateOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rotated {
		names = append(names, s.Identity.Name)
		if s.Serial == before[s.Identity.Name] {
			t.Errorf("%s: serial unchanged", s.Identity.Name)
		}
		svid, err := x509svid.Load(s.CertFile, s.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		leaf := svid.Certificates[0]
		if svid.ID != s.Identity.ID || len(svid.Certificates) != 2 || leaf.NotAfter.Sub(leaf.NotBefore) != time.Hour+time.Minute {
			t.Errorf("%s: ID %s, chain %d, lifetime %s", s.Identity.Name, svid.ID, len(svid.Certificates), leaf.NotAfter.Sub(leaf.NotBefore))
		}
		if want := []string{s.Identity.Name, "localhost", "orders.internal"}; strings.Join(leaf.DNSNames, ",") != strings.Join(want, ",") {
			t.Errorf("%s: DNS SANs %v, want %v kept", s.Identity.Name, leaf.DNSNames, want)
		}
		if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
			t.Errorf("%s: IP SANs %v, want 127.0.0.1 kept", s.Identity.Name, leaf.IPAddresses)
		}
	}
	if got := strings.Join(names, ","); got != "gateway,orders,inventory,payments" {
		t.Errorf("rotated %s, want the four workloads", got)
	}
	// The running source follows.
	waitUpdated(t, src.Updated())
	if got := serialOf(t, src); got != rotated[1].Serial {
		t.Errorf("source serial = %s, want the rotated %s", got, rotated[1].Serial)
	}

	// admin and alice on request; the others untouched.
	orders := readFile(t, filepath.Join(dir, "orders.pem"))
	rotated, err = certs.Rotate(dir, []string{"alice", "admin"}, certs.RotateOptions{})
	if err != nil || len(rotated) != 2 || rotated[0].Identity.ID.String() != "spiffe://shop.example/user/alice" {
		t.Fatalf("Rotate(alice, admin) = %v, %v", rotated, err)
	}
	if string(readFile(t, filepath.Join(dir, "orders.pem"))) != string(orders) {
		t.Error("rotating alice and admin changed orders.pem")
	}

	// A name without files changes nothing.
	alice := readFile(t, filepath.Join(dir, "alice.pem"))
	_, err = certs.Rotate(dir, []string{"alice", "bob"}, certs.RotateOptions{})
	if want := "certs: rotate bob: open " + filepath.Join(dir, "bob.pem") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Rotate(bob):\n got %v\nwant %s", err, want)
	}
	if string(readFile(t, filepath.Join(dir, "alice.pem"))) != string(alice) {
		t.Error("a failed Rotate wrote alice.pem")
	}
	if _, err := certs.Rotate(dir, []string{"../x"}, certs.RotateOptions{}); err == nil {
		t.Error("Rotate accepted a path as a name")
	}
	// No names is a mistake, not a no-op.
	if _, err := certs.Rotate(dir, nil, certs.RotateOptions{}); err == nil || err.Error() != "certs: rotate "+dir+": no SVID names given" {
		t.Errorf("Rotate(no names): %v", err)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
