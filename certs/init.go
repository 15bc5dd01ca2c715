package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Identity is one SVID that [Init] issues.
type Identity struct {
	// Name is the file name stem: the SVID goes to NAME.pem and NAME-key.pem.
	Name string
	// ID is the SPIFFE ID of the SVID.
	ID spiffeid.ID
	// DNSNames are the DNS SANs. Workloads have them (see [DevWorkload]);
	// people and operators usually do not.
	DNSNames []string
	// IPAddresses are the IP SANs.
	IPAddresses []net.IP
}

// DevWorkload returns the identity of a workload in a development setup:
// SPIFFE ID id, files NAME.pem and NAME-key.pem, DNS SANs name and
// localhost and IP SAN 127.0.0.1, so that a client can reach it on
// loopback or by its name (for example on a container network) and still
// check the host name.
func DevWorkload(name string, id spiffeid.ID) Identity {
	return Identity{
		Name:        name,
		ID:          id,
		DNSNames:    []string{name, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
}

// InitOptions configures [Init].
type InitOptions struct {
	// TrustDomain is the trust domain of a new CA and of the identities.
	// It is required. An existing CA for another trust domain is an error
	// unless Force is set.
	TrustDomain spiffeid.TrustDomain

	// Identities are the SVIDs to issue, in order. Each ID must be in
	// TrustDomain and have a path, and each Name must be a distinct file
	// name stem (see [WriteSVID]). By default, there are none: Init then
	// writes only the CA, and SVIDs come from [CA.Issue] later.
	Identities []Identity

	// TTL is the lifetime of each issued SVID. By default, it is
	// [DefaultSVIDTTL].
	TTL time.Duration

	// Force replaces an existing CA with a new one. By default, a CA found
	// in the directory is kept, so that certificates issued from it earlier
	// stay valid.
	Force bool

	// ExtraDNSNames are added to the DNS SANs of every identity that has
	// DNS SANs (the workloads), for example the host names a container
	// network gives the services. By default, there are none.
	ExtraDNSNames []string

	// CAValidity is the validity of a new CA. By default, it is
	// [DefaultCAValidity].
	CAValidity time.Duration

	// Intermediate issues the SVIDs from an intermediate CA
	// ([IntermediateFile], [IntermediateKeyFile]) signed by the root, so
	// that each NAME.pem holds the leaf and the intermediate while
	// [BundleFile] holds only the root. A new root is then made to allow
	// one intermediate. An existing root that does not allow one is an
	// error unless Force is set. By default, the root issues the SVIDs
	// directly; a kept CA that already has an intermediate keeps using it
	// either way, and Force without Intermediate removes it.
	Intermediate bool

	// Now is the issuance time. By default (the zero time), it is time.Now().
	Now time.Time
}

// InitResult reports what [Init] did.
type InitResult struct {
	// Dir is the directory Init wrote to.
	Dir string
	// CA is the CA the SVIDs were issued from.
	CA *CA
	// CACreated is true if Init created a new CA, false if it kept the one
	// already in Dir.
	CACreated bool
	// IntermediateCreated is true if Init created a new intermediate CA
	// (then CA is that intermediate).
	IntermediateCreated bool
	// JWTKeyCreated is true if Init wrote a new JWT-SVID signing key
	// ([JWTKeyFile]): with a new CA, or for a kept CA that had none.
	JWTKeyCreated bool
	// SVIDs lists the SVIDs written, in the order of
	// [InitOptions.Identities].
	SVIDs []WrittenSVID
	// Files lists every file written, in order: the CA files first (only
	// if CACreated), then the JWT-SVID signing key (only if JWTKeyCreated)
	// and the SPIFFE bundle (when it changed), then the intermediate's
	// (only if IntermediateCreated), then each SVID's key and certificate.
	Files []string
}

// WrittenSVID describes an SVID that [Init] or [Rotate] issued and wrote.
type WrittenSVID struct {
	// Identity is the identity the SVID was issued for, with the DNS SANs
	// it was issued with.
	Identity Identity
	// CertFile and KeyFile are the paths of the written files.
	CertFile, KeyFile string
	// NotAfter is when the SVID expires.
	NotAfter time.Time
	// Serial is the leaf's serial number in hexadecimal.
	Serial string
}

// Init writes a development PKI to dir: it checks opts (nothing is written
// if the trust domain or an identity is wrong); creates dir (mode 0755) if
// needed; keeps the CA already saved there (see [LoadCA]) unless
// opts.Force is set, or else creates and saves a new one; makes sure the
// CA has a JWT-SVID signing key ([JWTKeyFile]) and writes the trust bundle
// in the SPIFFE bundle format too ([SPIFFEBundleFile]); with
// opts.Intermediate, makes sure the SVIDs come from an intermediate CA;
// then issues every identity of opts.Identities and writes each with
// [WriteSVID]. Re-running Init refreshes the SVIDs without invalidating the
// trust bundle.
func Init(dir string, opts InitOptions) (InitResult, error) {
	res := InitResult{Dir: dir}
	if err := checkInit(dir, opts); err != nil {
		return res, err
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return res, fmt.Errorf("certs: init: %w", err)
	}
	ca, err := initCA(dir, opts, &res)
	if err != nil {
		return res, err
	}
	if opts.Intermediate && !ca.IsIntermediate() {
		if ca, err = initIntermediate(dir, ca, opts, &res); err != nil {
			return res, err
		}
	}
	res.CA = ca
	for _, ident := range opts.Identities {
		w, err := issueAndWrite(dir, ca, withExtraDNSNames(ident, opts.ExtraDNSNames), opts.TTL, opts.Now)
		if err != nil {
			return res, err
		}
		res.SVIDs = append(res.SVIDs, w)
		res.Files = append(res.Files, w.KeyFile, w.CertFile)
	}
	return res, nil
}

// checkInit checks the trust domain and the identities of opts before Init
// touches dir.
func checkInit(dir string, opts InitOptions) error {
	td := opts.TrustDomain
	if td.IsZero() {
		return fmt.Errorf("certs: init %s: no trust domain (set InitOptions.TrustDomain)", dir)
	}
	seen := make(map[string]bool, len(opts.Identities))
	for _, ident := range opts.Identities {
		if err := validateFileName(ident.Name); err != nil {
			return fmt.Errorf("certs: init %s: identity: %w", dir, err)
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("certs: init %s: identity %q: "+format, append([]any{dir, ident.Name}, args...)...)
		}
		switch {
		case seen[ident.Name]:
			return fail("listed twice")
		case ident.ID.IsZero():
			return fail("no SPIFFE ID")
		case ident.ID.TrustDomain() != td:
			return fail("SPIFFE ID %s is not in trust domain %q", ident.ID, td.Name())
		case ident.ID.Path() == "":
			return fail("SPIFFE ID %s has no path", ident.ID)
		}
		seen[ident.Name] = true
	}
	return nil
}

// initCA returns the CA in dir, or a new one saved there if there is none
// or opts.Force is set, noting in res what it created.
func initCA(dir string, opts InitOptions, res *InitResult) (*CA, error) {
	td := opts.TrustDomain
	exists, err := caExists(dir)
	if err != nil {
		return nil, err
	}
	if exists && !opts.Force {
		ca, err := LoadCA(dir)
		if err != nil {
			return nil, fmt.Errorf("%w (set Force to replace it)", err)
		}
		if ca.TrustDomain() != td {
			return nil, fmt.Errorf("certs: init %s: existing CA is for trust domain %q, not %q (set Force to replace it)",
				dir, ca.TrustDomain().Name(), td.Name())
		}
		return initJWT(dir, ca, res)
	}
	var maxPathLen int
	if opts.Intermediate {
		maxPathLen = 1
	}
	ca, err := NewCA(td, WithValidity(opts.CAValidity), WithNow(opts.Now), WithMaxPathLen(maxPathLen))
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	res.CACreated = true
	res.Files = append(res.Files, filepath.Join(dir, CAKeyFile), filepath.Join(dir, BundleFile))
	if ca, err = initJWT(dir, ca, res); err != nil {
		return nil, err
	}
	if !opts.Intermediate {
		// An intermediate left from the replaced CA would no longer
		// chain to the new root.
		for _, name := range []string{IntermediateFile, IntermediateKeyFile} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("certs: init: %w", err)
			}
		}
	}
	return ca, nil
}

// initJWT writes the JWT-SVID signing key of ca to dir (a new CA's, or a
// fresh one for a kept CA without one) and the SPIFFE bundle, noting in
// res what it wrote, and returns ca with its key.
func initJWT(dir string, ca *CA, res *InitResult) (*CA, error) {
	newKey := ca.jwt == nil || res.CACreated
	if ca.jwt == nil {
		var err error
		if ca, err = ca.withJWTSigner(); err != nil {
			return nil, err
		}
	}
	written, err := ca.saveJWT(dir, newKey)
	if err != nil {
		return nil, err
	}
	res.JWTKeyCreated = newKey
	res.Files = append(res.Files, written...)
	return ca, nil
}

// initIntermediate creates an intermediate CA signed by root, saves it in
// dir and notes it in res.
func initIntermediate(dir string, root *CA, opts InitOptions, res *InitResult) (*CA, error) {
	inter, err := root.NewIntermediate(WithNow(opts.Now))
	if err != nil {
		if !res.CACreated {
			return nil, fmt.Errorf("certs: init %s: the existing CA was created without room for an intermediate (set Force to replace it): %w", dir, err)
		}
		return nil, err
	}
	if err := inter.Save(dir); err != nil {
		return nil, err
	}
	res.IntermediateCreated = true
	res.Files = append(res.Files, filepath.Join(dir, IntermediateKeyFile), filepath.Join(dir, IntermediateFile))
	return inter, nil
}

// withExtraDNSNames returns ident with extra added to its DNS SANs, if it
// has any, leaving ident's own slice alone.
func withExtraDNSNames(ident Identity, extra []string) Identity {
	if ident.DNSNames == nil {
		return ident
	}
	ident.DNSNames = slices.Clone(ident.DNSNames)
	for _, name := range extra {
		if !slices.Contains(ident.DNSNames, name) {
			ident.DNSNames = append(ident.DNSNames, name)
		}
	}
	return ident
}

// issueAndWrite issues ident from ca and writes it to dir with [WriteSVID].
func issueAndWrite(dir string, ca *CA, ident Identity, ttl time.Duration, now time.Time) (WrittenSVID, error) {
	svid, err := ca.Issue(IssueRequest{
		ID:          ident.ID,
		DNSNames:    ident.DNSNames,
		IPAddresses: ident.IPAddresses,
		TTL:         ttl,
		Now:         now,
	})
	if err != nil {
		return WrittenSVID{}, err
	}
	certPath, keyPath, err := WriteSVID(dir, ident.Name, svid)
	if err != nil {
		return WrittenSVID{}, err
	}
	return WrittenSVID{
		Identity: ident,
		CertFile: certPath,
		KeyFile:  keyPath,
		NotAfter: svid.Certificates[0].NotAfter,
		Serial:   svid.Certificates[0].SerialNumber.Text(16),
	}, nil
}

// caExists reports whether dir holds a [BundleFile].
func caExists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, BundleFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("certs: init: %w", err)
	}
}
