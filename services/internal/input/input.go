package input

import "github.com/trustmesh/trustmesh/internal/clip"

// MaxIDBytes is the longest ID or name, in bytes, that the sample mesh's
// services accept.
const MaxIDBytes = 128

// ClipBytes is the most bytes of a caller's text that [Clip] keeps.
const ClipBytes = 64

// Clip returns s, a caller's text, cut to at most [ClipBytes] bytes for an
// error message or a log line, as clip.Counted cuts it ("abc…(6 bytes)").
func Clip(s string) string { return clip.Counted(s, ClipBytes) }
