package policy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

// parseErrorLine is the shape of every error Parse returns for file "f".
var parseErrorLine = regexp.MustCompile(`^f:[1-9][0-9]*: [^\n]+$`)

// FuzzParse checks that Parse never panics, that its errors are one line
// naming the file and a line, and that whatever it accepts compiles. The
// seeds are the fixtures in testdata and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	names, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse("f", data)
		if err != nil {
			if !parseErrorLine.MatchString(err.Error()) {
				t.Fatalf("error %q is not one line \"f:LINE: ...\"", err)
			}
			return
		}
		if p.Source != "f" {
			t.Errorf("Source = %q, want f", p.Source)
		}
		if _, err := policy.Compile(p); err != nil {
			t.Fatalf("Parse accepted a policy that does not compile: %v", err)
		}
	})
}

// FuzzCallerMatch compiles random caller patterns and decides for random
// IDs: it never panics, and a decision agrees with a simple reference
// matcher (whole segments, * for one, a trailing ** for one or more), so a
// pattern without wildcards matches exactly the ID it names and no pattern
// matches an ID from another trust domain. The seeds are in
// testdata/fuzz/FuzzCallerMatch.
func FuzzCallerMatch(f *testing.F) {
	f.Add("spiffe://td/user/*", "spiffe://td/user/alice")
	f.Fuzz(func(t *testing.T, pattern, rawID string) {
		perr := policy.ParseCaller(pattern)
		e, cerr := policy.Compile(policy.Policy{Rules: []policy.Rule{{
			Name: "r", Effect: policy.Allow, From: []string{pattern}, To: []string{"*"},
		}}})
		if (perr == nil) != (cerr == nil) {
			t.Fatalf("ParseCaller(%q) = %v but Compile: %v", pattern, perr, cerr)
		}
		if perr != nil {
			return
		}
		// A pattern without wildcards names exactly one ID.
		if !strings.Contains(pattern, "*") {
			named, err := spiffeid.FromString(pattern)
			if err != nil {
				td, tderr := spiffeid.TrustDomainFromString(strings.TrimPrefix(pattern, "spiffe://"))
				if tderr != nil {
					t.Fatalf("ParseCaller accepted %q, neither an ID (%v) nor a trust domain (%v)", pattern, err, tderr)
				}
				named = td.ID()
			}
			if got := e.Decide("/x.Y/Z", named).Outcome; got != policy.Allowed {
				t.Errorf("pattern %q does not match the ID it names: %v", pattern, got)
			}
		}
		id, err := spiffeid.FromString(rawID)
		if err != nil {
			return
		}
		got := e.Decide("/x.Y/Z", id).Outcome == policy.Allowed
		if want := referenceMatch(pattern, id); got != want {
			t.Fatalf("pattern %q, ID %q: match %v, want %v", pattern, id, got, want)
		}
		if got && id.TrustDomain().Name() != trustDomainOf(pattern) {
			t.Fatalf("pattern %q matched %q from another trust domain", pattern, id)
		}
	})
}

func trustDomainOf(pattern string) string {
	td, _, _ := strings.Cut(strings.TrimPrefix(pattern, "spiffe://"), "/")
	return td
}

// referenceMatch is a slow, obviously correct caller-pattern matcher for
// a valid pattern.
func referenceMatch(pattern string, id spiffeid.ID) bool {
	td, path, hasPath := strings.Cut(strings.TrimPrefix(pattern, "spiffe://"), "/")
	if id.TrustDomain().Name() != td {
		return false
	}
	if !hasPath {
		return true // the whole trust domain
	}
	want := strings.Split(path, "/")
	var got []string
	if id.Path() != "" {
		got = strings.Split(id.Path()[1:], "/")
	}
	if want[len(want)-1] == "**" {
		want = want[:len(want)-1]
		if len(got) <= len(want) {
			return false
		}
		got = got[:len(want)]
	}
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		if want[i] != "*" && want[i] != got[i] {
			return false
		}
	}
	return true
}
