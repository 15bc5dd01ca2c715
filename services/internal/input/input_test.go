package input_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustmesh/trustmesh/services/internal/input"
)

func TestClipTo(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"empty", "", 3, ""},
		{"shorter", "ab", 3, "ab"},
		{"exact", "abc", 3, "abc"},
		{"longer", "abcdef", 3, "abc…(6 bytes)"},
		{"zero", "abc", 0, "…(3 bytes)"},
		{"negative", "abc", -1, "…(3 bytes)"},
		// "€" is three bytes: a cut inside it drops the whole rune.
		{"inside a rune", "a€b", 2, "a…(5 bytes)"},
		{"inside a rune, one byte later", "a€b", 3, "a…(5 bytes)"},
		{"after a rune", "a€b", 4, "a€…(5 bytes)"},
		{"only continuation bytes", "\x80\x80\x80\x80", 2, "…(4 bytes)"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := input.ClipTo(tc.s, tc.n); got != tc.want {
				t.Errorf("ClipTo(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	if got := input.Clip("sku-apple"); got != "sku-apple" {
		t.Errorf("Clip(short) = %q", got)
	}
	long := strings.Repeat("é", 1<<19) // 1 MiB of two-byte runes
	got := input.Clip(long)
	if want := strings.Repeat("é", input.ClipBytes/2) + "…(1048576 bytes)"; got != want {
		t.Errorf("Clip(1 MiB) = %q, want %q", got, want)
	}
	if !utf8.ValidString(got) {
		t.Errorf("Clip(1 MiB) = %q, not valid UTF-8", got)
	}
}
