package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
