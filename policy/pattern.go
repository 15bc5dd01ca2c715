package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// callerPattern is a compiled caller pattern.
type callerPattern struct {
	raw string
	td  spiffeid.TrustDomain
	// kind says how to match the path.
	kind patternKind
	// exact is the full ID string for kindExact.
	exact string
	// segments are the path segments for kindSegments and kindPrefix; "*"
	// matches any one segment. For kindPrefix the pattern's "**" is dropped
	// and at least one more segment must follow.
	segments []string
}

type patternKind int

const (
	kindExact       patternKind = iota + 1 // spiffe://td/a/b
	kindTrustDomain                        // spiffe://td
	kindSegments                           // spiffe://td/a/*/c
	kindPrefix                             // spiffe://td/a/**
)

var (
	errPartialWildcard = errors.New("wildcards must be a whole path segment (* or a trailing **)")
	errInnerDoubleStar = errors.New("** is only allowed as the last path segment")
)

// ParseCaller checks a caller pattern (see the package doc) and returns an
// error that says what is wrong with it.
func ParseCaller(s string) error {
	_, err := parseCaller(s)
	return err
}

func parseCaller(s string) (callerPattern, error) {
	const scheme = "spiffe://"
	if !strings.HasPrefix(s, scheme) {
		return callerPattern{}, fmt.Errorf("caller %q: must start with %s", s, scheme)
	}
	rest := s[len(scheme):]
	tdName, path, _ := strings.Cut(rest, "/")
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return callerPattern{}, fmt.Errorf("caller %q: %w", s, err)
	}
	p := callerPattern{raw: s, td: td}
	if path == "" && !strings.HasSuffix(rest, "/") {
		p.kind = kindTrustDomain
		return p, nil
	}
	if !strings.Contains(path, "*") {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return callerPattern{}, fmt.Errorf("caller %q: %w", s, err)
		}
		p.kind, p.exact = kindExact, id.String()
		return p, nil
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		switch {
		case seg == "**":
			if i != len(segs)-1 {
				return callerPattern{}, fmt.Errorf("caller %q: %w", s, errInnerDoubleStar)
			}
		case seg == "*":
		case strings.Contains(seg, "*"):
			return callerPattern{}, fmt.Errorf("caller %q: %w", s, errPartialWildcard)
		default:
			if err := spiffeid.ValidatePathSegment(seg); err != nil {
				return callerPattern{}, fmt.Errorf("caller %q: %w", s, err)
			}
		}
	}
	if segs[len(segs)-1] == "**" {
		p.kind, p.segments = kindPrefix, segs[:len(segs)-1]
	} else {
		p.kind, p.segments = kindSegments, segs
	}
	return p, nil
}

// match reports whether id matches p. It allocates nothing.
func (p *callerPattern) match(id spiffeid.ID) bool {
	if id.TrustDomain() != p.td {
		return false
	}
	switch p.kind {
	case kindTrustDomain:
		return true
	case kindExact:
		return id.String() == p.exact
	}
	path := id.Path() // "/a/b/c"
	for _, want := range p.segments {
		if len(path) == 0 {
			return false
		}
		path = path[1:] // drop "/"
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = ""
		}
		if want != "*" && want != seg {
			return false
		}
	}
	if p.kind == kindPrefix {
		return len(path) > 0 // at least one more segment
	}
	return len(path) == 0
}

// methodPattern is a parsed method pattern.
type methodPattern struct {
	raw     string
	all     bool   // "*"
	service string // "pkg.Service" for "/pkg.Service/*"
	method  string // "/pkg.Service/Method" for an exact method
}

// ParseMethod checks a method pattern ("/pkg.Service/Method",
// "/pkg.Service/*" or "*") and returns an error that says what is wrong.
func ParseMethod(s string) error {
	_, err := parseMethod(s)
	return err
}

func parseMethod(s string) (methodPattern, error) {
	if s == "*" {
		return methodPattern{raw: s, all: true}, nil
	}
	svc, method, ok := splitMethod(s)
	if !ok {
		return methodPattern{}, fmt.Errorf("method %q: want /package.Service/Method, /package.Service/* or *", s)
	}
	if !validFullName(svc) {
		return methodPattern{}, fmt.Errorf("method %q: service %q is not a fully-qualified protobuf name", s, svc)
	}
	if method == "*" {
		return methodPattern{raw: s, service: svc}, nil
	}
	if !validIdent(method) {
		return methodPattern{}, fmt.Errorf("method %q: method name %q is not a protobuf identifier (wildcards: /package.Service/* or *)", s, method)
	}
	return methodPattern{raw: s, method: s}, nil
}

// splitMethod splits "/pkg.Service/Method" into "pkg.Service" and "Method"
// without allocating.
func splitMethod(full string) (service, method string, ok bool) {
	if len(full) < 4 || full[0] != '/' {
		return "", "", false
	}
	i := strings.LastIndexByte(full, '/')
	if i <= 1 || i == len(full)-1 {
		return "", "", false
	}
	return full[1:i], full[i+1:], true
}

func validFullName(s string) bool {
	if s == "" {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if !validIdent(part) {
			return false
		}
	}
	return true
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
