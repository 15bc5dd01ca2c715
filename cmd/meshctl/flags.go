package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

// maxTTL bounds --ttl: development SVIDs are short-lived.
const maxTTL = 365 * 24 * time.Hour

// listFlag is a repeatable flag that also splits comma-separated values:
// --dns a,b --dns c gives [a b c].
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

// ipListFlag is a listFlag of IP addresses.
type ipListFlag []net.IP

func (l *ipListFlag) String() string {
	items := make([]string, len(*l))
	for i, ip := range *l {
		items[i] = ip.String()
	}
	return strings.Join(items, ",")
}

func (l *ipListFlag) Set(v string) error {
	var items listFlag
	_ = items.Set(v)
	for _, item := range items {
		ip := net.ParseIP(item)
		if ip == nil {
			return fmt.Errorf("%q is not an IP address", item)
		}
		*l = append(*l, ip)
	}
	return nil
}

// checkTTL rejects a --ttl outside (0, 1 year].
func checkTTL(ttl time.Duration) error {
	switch {
	case ttl <= 0:
		return usageErrorf("--ttl %s: must be positive", ttl)
	case ttl > maxTTL:
		return usageErrorf("--ttl %s: must be at most %s (1 year)", ttl, maxTTL)
	}
	return nil
}

// parseTrustDomain parses --trust-domain.
func parseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, usageErrorf("--trust-domain %q: %v", s, err)
	}
	return td, nil
}

// parseID parses --id.
func parseID(s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, usageErrorf("--id %q: %v", s, err)
	}
	return id, nil
}

// identitiesFlag is a repeatable list of NAME=PATH identities (comma-separated
// too), for `certs init`: NAME is the file name stem and PATH the SPIFFE ID
// path in the trust domain, e.g. orders=/ns/shop/sa/orders. It starts with
// a default list, which the first value given replaces.
type identitiesFlag struct {
	items []namedPath
	set   bool // a value was given: the defaults are gone
}

// namedPath is one item of an identitiesFlag.
type namedPath struct{ name, path string }

func (f *identitiesFlag) String() string {
	items := make([]string, len(f.items))
	for i, it := range f.items {
		items[i] = it.name + "=" + it.path
	}
	return strings.Join(items, ",")
}

func (f *identitiesFlag) Set(v string) error {
	if !f.set {
		f.items, f.set = nil, true
	}
	var items listFlag
	_ = items.Set(v)
	for _, item := range items {
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || !strings.HasPrefix(path, "/") {
			return fmt.Errorf("%q: want NAME=/PATH, e.g. orders=/ns/shop/sa/orders", item)
		}
		f.items = append(f.items, namedPath{name: name, path: path})
	}
	return nil
}

// identities returns the identities of f in trust domain td; a workload
// gets the SANs of [certs.DevWorkload].
func (f *identitiesFlag) identities(flagName string, td spiffeid.TrustDomain, workload bool) ([]certs.Identity, error) {
	idents := make([]certs.Identity, 0, len(f.items))
	for _, it := range f.items {
		id, err := spiffeid.FromPath(td, it.path)
		if err != nil {
			return nil, usageErrorf("--%s %q: %v", flagName, it.name+"="+it.path, err)
		}
		ident := certs.Identity{Name: it.name, ID: id}
		if workload {
			ident = certs.DevWorkload(it.name, id)
		}
		idents = append(idents, ident)
	}
	return idents, nil
}

// sampleIdentities returns the sample mesh's development identities as the
// defaults of `certs init`: its workloads (those with DNS SANs) and the
// others.
func sampleIdentities() (workloads, others *identitiesFlag) {
	workloads, others = &identitiesFlag{}, &identitiesFlag{}
	for _, ident := range sample.DevIdentities(spiffeid.RequireTrustDomainFromString(sample.TrustDomain)) {
		it := namedPath{name: ident.Name, path: ident.ID.Path()}
		if ident.DNSNames != nil {
			workloads.items = append(workloads.items, it)
		} else {
			others.items = append(others.items, it)
		}
	}
	return workloads, others
}
