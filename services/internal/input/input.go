package input

import "github.com/trustmesh/trustmesh/internal/clip"

// MaxIDBytes is the longest ID or name, in bytes, that the sample mesh's
// services accept.
const MaxIDBytes = 128

// ClipBytes is the most bytes of a caller's text that [Clip] keeps.
const ClipBytes = 64

// Clip returns s, a caller's text, cut to at most [ClipBytes] bytes for an
// error message or a log line; see [ClipTo].
func Clip(s string) string { return ClipTo(s, ClipBytes) }

// ClipTo returns s if it has at most n bytes. Otherwise it returns the
// longest prefix of s of at most n bytes that does not split a UTF-8
// sequence, followed by "…(N bytes)", where N is the length of s:
// ClipTo("abcdef", 3) is "abc…(6 bytes)". A negative n counts as zero.
func ClipTo(s string, n int) string { return clip.Counted(s, n) }
