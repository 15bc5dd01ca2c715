package clip_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustmesh/trustmesh/internal/clip"
)

func TestClip(t *testing.T) {
	t.Parallel()
	// "é" is 2 bytes, "€" 3: a cut inside either backs up to its start.
	testCases := []struct {
		name         string
		s            string
		n            int
		str, counted string
	}{
		{"empty", "", 4, "", ""},
		{"shorter", "abc", 4, "abc", "abc"},
		{"exactly n", "abcd", 4, "abcd", "abcd"},
		{"one over", "abcde", 4, "abcd...", "abcd…(5 bytes)"},
		{"zero", "abc", 0, "...", "…(3 bytes)"},
		{"negative", "abc", -1, "...", "…(3 bytes)"},
		{"cut before a rune", "abcdé", 4, "abcd...", "abcd…(6 bytes)"},
		{"cut inside a 2-byte rune", "abcé", 4, "abc...", "abc…(5 bytes)"},
		{"cut inside a 3-byte rune", "ab€cd", 3, "ab...", "ab…(7 bytes)"},
		{"cut after a 3-byte rune", "ab€cd", 5, "ab€...", "ab€…(7 bytes)"},
		{"cut inside the first rune", "€abc", 2, "...", "…(6 bytes)"},
		{"multi-byte fits exactly", "é€", 5, "é€", "é€"},
		{"invalid UTF-8 kept byte for byte", "ab\xffcd", 3, "ab\xff...", "ab\xff…(5 bytes)"},
		{"only continuation bytes", "\x80\x80\x80\x80", 2, "...", "…(4 bytes)"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := clip.String(tc.s, tc.n); got != tc.str {
				t.Errorf("String(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.str)
			}
			if got := clip.Counted(tc.s, tc.n); got != tc.counted {
				t.Errorf("Counted(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.counted)
			}
		})
	}
}

// TestClipNeverSplitsARune: whatever the limit, a valid UTF-8 string stays
// valid once clipped, and its clipped prefix is at most n bytes.
func TestClipNeverSplitsARune(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("aé€𝄞", 8)
	for n := 0; n <= len(s); n++ {
		got := clip.String(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("String(s, %d) = %q: not valid UTF-8", n, got)
		}
		if head, _ := strings.CutSuffix(got, "..."); len(head) > n || !strings.HasPrefix(s, head) {
			t.Fatalf("String(s, %d) = %q: not a prefix of s of at most %d bytes", n, got, n)
		}
	}
}
