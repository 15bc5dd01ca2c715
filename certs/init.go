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

// DefaultTrustDomain is the trust domain of the sample mesh, used by [Init]
// when [InitOptions.TrustDomain] is zero.
const DefaultTrustDomain = "shop.example"

// Identity is one entry of the standard development identities.
type Identity struct {
	// Name is the file name stem: the SVID goes to NAME.pem and NAME-key.pem.
	Name string
	// ID is the SPIFFE ID of the SVID.
	ID spiffeid.ID
	// DNSNames are the DNS SANs; only workloads have them.
	DNSNames []string
	// IPAddresses are the IP SANs; only workloads have them.
	IPAddresses []net.IP
}

// DevIdentities returns the standard development identities in trust domain
// td, in the order [Init] issues them:
//
//	gateway, orders, inventory, payments   spiffe://TD/ns/shop/sa/NAME, DNS SANs NAME and localhost, IP SAN 127.0.0.1
//	admin (the operator)                   spiffe://TD/ns/ops/sa/admin
//	alice (a person, e.g. grpcurl)         spiffe://TD/user/alice
//
// Each call returns a fresh slice that the caller may modify.
func DevIdentities(td spiffeid.TrustDomain) []Identity {
	var ids []Identity
	for _, name := range WorkloadNames {
		ids = append(ids, Identity{
			Name:        name,
			ID:          mustID(td, "ns", "shop", "sa", name),
			DNSNames:    []string{name, "localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		})
	}
	return append(ids,
		Identity{Name: "admin", ID: mustID(td, "ns", "ops", "sa", "admin")},
		Identity{Name: "alice", ID: mustID(td, "user", "alice")},
	)
}

// mustID builds an ID from segments that are known to be valid. A zero td
// yields a zero ID, which [CA.Issue] rejects.
func mustID(td spiffeid.TrustDomain, segments ...string) spiffeid.ID {
	id, err := spiffeid.FromSegments(td, segments...)
	if err != nil {
		return spiffeid.ID{}
	}
	return id
}

// InitOptions configures [Init]. The zero value is ready to use.
type InitOptions struct {
	// TrustDomain is the trust domain of a new CA and of the identities.
	// By default, it is [DefaultTrustDomain]. An existing CA for another
	// trust domain is an error unless Force is set.
	TrustDomain spiffeid.TrustDomain

	// TTL is the lifetime of each issued SVID. By default, it is
	// [DefaultSVIDTTL].
	TTL time.Duration

	// Force replaces an existing CA with a new one. By default, a CA found
	// in the directory is kept, so that certificates issued from it earlier
	// stay valid.
	Force bool

	// ExtraDNSNames are added to the DNS SANs of every workload SVID, for
	// example the host names a container network gives the services. By
	// default, workloads get their own name and "localhost".
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
	// SVIDs lists the SVIDs written, in the order of [DevIdentities].
	SVIDs []WrittenSVID
	// Files lists every file written, in order: the CA files first (only
	// if CACreated), then the intermediate's (only if IntermediateCreated),
	// then each SVID's key and certificate.
	Files []string
}

// WrittenSVID describes an SVID that [Init] issued and wrote.
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

// Init writes a development PKI to dir: it creates dir (mode 0755) if
// needed; keeps the CA already saved there (see [LoadCA]) unless
// opts.Force is set, or else creates and saves a new one; with
// opts.Intermediate, makes sure the SVIDs come from an intermediate CA;
// then issues every identity of [DevIdentities] and writes each with
// [WriteSVID]. Re-running Init refreshes the SVIDs without invalidating the
// trust bundle.
func Init(dir string, opts InitOptions) (InitResult, error) {
	td := opts.TrustDomain
	if td.IsZero() {
		td = spiffeid.RequireTrustDomainFromString(DefaultTrustDomain)
	}
	res := InitResult{Dir: dir}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return res, fmt.Errorf("certs: init: %w", err)
	}

	var ca *CA
	exists, err := caExists(dir)
	if err != nil {
		return res, err
	}
	if exists && !opts.Force {
		if ca, err = LoadCA(dir); err != nil {
			return res, fmt.Errorf("%w (set Force to replace it)", err)
		}
		if ca.TrustDomain() != td {
			return res, fmt.Errorf("certs: init %s: existing CA is for trust domain %q, not %q (set Force to replace it)",
				dir, ca.TrustDomain().Name(), td.Name())
		}
	} else {
		var maxPathLen int
		if opts.Intermediate {
			maxPathLen = 1
		}
		if ca, err = NewCA(td, WithValidity(opts.CAValidity), WithNow(opts.Now), WithMaxPathLen(maxPathLen)); err != nil {
			return res, err
		}
		if err := ca.Save(dir); err != nil {
			return res, err
		}
		res.CACreated = true
		res.Files = append(res.Files, filepath.Join(dir, CAKeyFile), filepath.Join(dir, BundleFile))
		if !opts.Intermediate {
			// An intermediate left from the replaced CA would no longer
			// chain to the new root.
			for _, name := range []string{IntermediateFile, IntermediateKeyFile} {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return res, fmt.Errorf("certs: init: %w", err)
				}
			}
		}
	}
	if opts.Intermediate && !ca.IsIntermediate() {
		inter, err := ca.NewIntermediate(WithNow(opts.Now))
		if err != nil {
			if !res.CACreated {
				return res, fmt.Errorf("certs: init %s: the existing CA was created without room for an intermediate (set Force to replace it): %w", dir, err)
			}
			return res, err
		}
		if err := inter.Save(dir); err != nil {
			return res, err
		}
		ca = inter
		res.IntermediateCreated = true
		res.Files = append(res.Files, filepath.Join(dir, IntermediateKeyFile), filepath.Join(dir, IntermediateFile))
	}
	res.CA = ca

	for _, ident := range DevIdentities(td) {
		if ident.DNSNames != nil {
			for _, extra := range opts.ExtraDNSNames {
				if !slices.Contains(ident.DNSNames, extra) {
					ident.DNSNames = append(ident.DNSNames, extra)
				}
			}
		}
		svid, err := ca.Issue(IssueRequest{
			ID:          ident.ID,
			DNSNames:    ident.DNSNames,
			IPAddresses: ident.IPAddresses,
			TTL:         opts.TTL,
			Now:         opts.Now,
		})
		if err != nil {
			return res, err
		}
		certPath, keyPath, err := WriteSVID(dir, ident.Name, svid)
		if err != nil {
			return res, err
		}
		res.SVIDs = append(res.SVIDs, WrittenSVID{
			Identity: ident,
			CertFile: certPath,
			KeyFile:  keyPath,
			NotAfter: svid.Certificates[0].NotAfter,
			Serial:   svid.Certificates[0].SerialNumber.Text(16),
		})
		res.Files = append(res.Files, keyPath, certPath)
	}
	return res, nil
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
