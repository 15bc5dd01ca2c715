package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/clip"
)

// Reasons for refusing a Workload API response, the values of the reason
// attribute of [RejectedMetric].
const (
	// RejectMissingField: a mandatory field is at its default value: no
	// SVID in the response, or an empty spiffe_id, x509_svid, x509_svid_key
	// or bundle, or an empty federated bundle.
	RejectMissingField = "missing_field"
	// RejectMalformed: a field does not parse (certificates, key, trust
	// domain), the key does not match the certificate, or the leaf breaks
	// the X.509-SVID rules that need no bundle.
	RejectMalformed = "malformed"
	// RejectIDNotOffered: no SVID has the ID asked for with [WithSVIDID].
	RejectIDNotOffered = "id_not_offered"
	// RejectIDMismatch: spiffe_id is not the certificate's URI SAN.
	RejectIDMismatch = "id_mismatch"
	// RejectNotValidNow: the leaf is expired or not yet valid.
	RejectNotValidNow = "not_valid_now"
	// RejectUntrusted: the chain does not verify against the bundle of the
	// same response under the X.509-SVID rules, as a server or as a client.
	RejectUntrusted = "untrusted"
)

// rejection is why a Workload API response was refused: one of the Reject*
// reasons, for the metric, and the error, for the log.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }

func (r *rejection) Unwrap() error { return r.err }

// reasonOf returns the Reject* reason of err.
func reasonOf(err error) string {
	if r, ok := errors.AsType[*rejection](err); ok {
		return r.reason
	}
	return RejectMalformed
}

// workloadMaterial is what a sound Workload API response gives: the SVID the
// source presents and the bundles it verifies peers against.
type workloadMaterial struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set
}

// checkWorkloadResponse turns resp into material if it is sound as of now,
// with the checks [FileSource] applies to files: the SVID picked (the one
// with SPIFFE ID want, or the first, the Workload API's default, if want is
// zero) has every mandatory field set, its key matches its certificate, its
// spiffe_id field is its certificate's URI SAN, its leaf is valid at now,
// and its chain verifies under the X.509-SVID rules ([identity.Verify]) as a
// server and as a client against the bundle of the same response. The
// bundles are that SVID's bundle and the federated ones, none of them
// empty. where names the source in errors ("SPIFFE Workload API at ADDR").
func checkWorkloadResponse(where string, want spiffeid.ID, resp *workload.X509SVIDResponse, now time.Time) (*workloadMaterial, error) {
	reject := func(reason, format string, args ...any) error {
		return &rejection{reason: reason, err: fmt.Errorf("certs: %s: "+format, append([]any{where}, args...)...)}
	}
	if len(resp.GetSvids()) == 0 {
		return nil, reject(RejectMissingField, "response holds no X.509-SVID")
	}
	i := 0
	if !want.IsZero() {
		i = slices.IndexFunc(resp.GetSvids(), func(s *workload.X509SVID) bool { return s.GetSpiffeId() == want.String() })
		if i < 0 {
			return nil, reject(RejectIDNotOffered, "no SVID with ID %s among those offered", want)
		}
	}
	entry := resp.GetSvids()[i]
	name := fmt.Sprintf("X.509-SVID %d", i+1)
	if entry.GetSpiffeId() != "" {
		name += fmt.Sprintf(" (%q)", clip.String(entry.GetSpiffeId(), maxFieldEcho))
	}
	for _, f := range []struct {
		name  string
		empty bool
	}{
		{"spiffe_id", entry.GetSpiffeId() == ""},
		{"x509_svid", len(entry.GetX509Svid()) == 0},
		{"x509_svid_key", len(entry.GetX509SvidKey()) == 0},
		{"bundle", len(entry.GetBundle()) == 0},
	} {
		if f.empty {
			return nil, reject(RejectMissingField, "%s: mandatory field %s is empty", name, f.name)
		}
	}

	svid, err := x509svid.ParseRaw(entry.GetX509Svid(), entry.GetX509SvidKey())
	if err != nil {
		return nil, reject(RejectMalformed, "%s: %w", name, err)
	}
	if entry.GetSpiffeId() != svid.ID.String() {
		return nil, reject(RejectIDMismatch, "%s: spiffe_id differs from the certificate's URI SAN %q", name, svid.ID.String())
	}
	svid.Hint = entry.GetHint()
	if err := checkValidity(where, svid.Certificates[0], now); err != nil {
		return nil, &rejection{reason: RejectNotValidNow, err: err}
	}

	td := svid.ID.TrustDomain()
	authorities, err := x509.ParseCertificates(entry.GetBundle())
	if err != nil {
		return nil, reject(RejectMalformed, "%s: bundle: %w", name, err)
	}
	bundles := x509bundle.NewSet(x509bundle.FromX509Authorities(td, authorities))
	federated := make([]string, 0, len(resp.GetFederatedBundles()))
	for key := range resp.GetFederatedBundles() {
		federated = append(federated, key)
	}
	slices.Sort(federated) // the first bad one named is always the same
	for _, key := range federated {
		raw := resp.GetFederatedBundles()[key]
		fedTD, err := spiffeid.TrustDomainFromString(key)
		if err != nil {
			return nil, reject(RejectMalformed, "federated bundle %q: %w", clip.String(key, maxFieldEcho), err)
		}
		if fedTD == td {
			return nil, reject(RejectMalformed, "federated bundle %q repeats the trust domain of %s", clip.String(key, maxFieldEcho), name)
		}
		if len(raw) == 0 {
			return nil, reject(RejectMissingField, "federated bundle %q is empty", clip.String(key, maxFieldEcho))
		}
		authorities, err := x509.ParseCertificates(raw)
		if err != nil {
			return nil, reject(RejectMalformed, "federated bundle %q: %w", clip.String(key, maxFieldEcho), err)
		}
		if bundles.Has(fedTD) {
			return nil, reject(RejectMalformed, "federated bundle %q: trust domain %q appears twice", clip.String(key, maxFieldEcho), fedTD.Name())
		}
		bundles.Add(x509bundle.FromX509Authorities(fedTD, authorities))
	}

	if err := verifyBothRoles(svid, bundles, now); err != nil {
		return nil, reject(RejectUntrusted, "%w", err)
	}
	return &workloadMaterial{svid: svid, bundles: bundles}, nil
}

// maxFieldEcho bounds how much of a string field of a Workload API
// response goes into an error or a log line: it is cut with [clip.String]
// to maxFieldEcho bytes on a rune boundary and marked "..." when longer.
const maxFieldEcho = 256
