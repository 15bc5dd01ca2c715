package input_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustmesh/trustmesh/services/internal/input"
)

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
