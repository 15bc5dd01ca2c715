package mesh

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// servingReporter is an SVID source that can lose its identity, as
// certs.WorkloadSource does when the SPIFFE Workload API answers
// PermissionDenied (the agent withdrew the workload's registration).
type servingReporter interface {
	// Serving reports whether the source presents an SVID.
	Serving() bool
	// ServingChanged receives a value after Serving changes.
	ServingChanged() <-chan struct{}
}

// followServing calls set with whether src presents an SVID, now and after
// every change, until ctx ends; a source that cannot lose its identity is
// always serving. Servers use it to answer NOT_SERVING to health checks
// while they have no identity.
func followServing(ctx context.Context, src x509svid.Source, set func(serving bool)) {
	rep, ok := src.(servingReporter)
	if !ok {
		return
	}
	for {
		set(rep.Serving())
		select {
		case <-ctx.Done():
			return
		case <-rep.ServingChanged():
		}
	}
}
