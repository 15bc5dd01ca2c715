package certs

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/pemfile"
)

// RotateOptions configures [Rotate]. The zero value is ready to use.
type RotateOptions struct {
	// TTL is the lifetime of each new SVID. By default, it is
	// [DefaultSVIDTTL].
	TTL time.Duration

	// Now is the issuance time. By default (the zero time), it is time.Now().
	Now time.Time
}

// Rotate re-issues, in place, the SVIDs called names (file name stems, as
// for [WriteSVID]; at least one) in dir from the CA in dir
// (see [LoadCA]: the intermediate, when there is one). Each new SVID keeps
// the SPIFFE ID, DNS SANs and IP SANs of the leaf in NAME.pem, gets a fresh
// key and serial number, and replaces NAME-key.pem and then NAME.pem
// atomically, so a running [FileSource] moves to it without a restart.
// Every SVID is issued before any is written: a name that cannot be
// re-issued (no NAME.pem, an ID outside the CA's trust domain) changes
// nothing. It returns what it wrote, in the order of names.
func Rotate(dir string, names []string, opts RotateOptions) ([]WrittenSVID, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("certs: rotate %s: no SVID names given", dir)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	type pending struct {
		ident Identity
		svid  *x509svid.SVID
	}
	var todo []pending
	for _, name := range names {
		if err := validateFileName(name); err != nil {
			return nil, fmt.Errorf("certs: rotate: %w", err)
		}
		chain, err := pemfile.ReadCertificates(filepath.Join(dir, name+".pem"))
		if err != nil {
			return nil, fmt.Errorf("certs: rotate %s: %w", name, err)
		}
		leaf := chain[0]
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return nil, fmt.Errorf("certs: rotate %s: %s.pem: %w", name, name, err)
		}
		ident := Identity{Name: name, ID: id, DNSNames: leaf.DNSNames, IPAddresses: leaf.IPAddresses}
		svid, err := ca.Issue(IssueRequest{ID: id, DNSNames: ident.DNSNames, IPAddresses: ident.IPAddresses, TTL: opts.TTL, Now: opts.Now})
		if err != nil {
			return nil, fmt.Errorf("%w (rotating %s.pem)", err, name)
		}
		todo = append(todo, pending{ident, svid})
	}
	written := make([]WrittenSVID, 0, len(todo))
	for _, p := range todo {
		certPath, keyPath, err := WriteSVID(dir, p.ident.Name, p.svid)
		if err != nil {
			return written, err
		}
		written = append(written, WrittenSVID{
			Identity: p.ident,
			CertFile: certPath,
			KeyFile:  keyPath,
			NotAfter: p.svid.Certificates[0].NotAfter,
			Serial:   p.svid.Certificates[0].SerialNumber.Text(16),
		})
	}
	return written, nil
}
