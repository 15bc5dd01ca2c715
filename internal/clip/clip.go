// Package clip bounds untrusted text (read from a token, a certificate, a
// Workload API response or a caller's request) before it goes into an
// error or a log line: nothing a peer sends comes back or is logged
// unbounded. It is the one implementation of what trustmesh's packages
// each used to write for themselves.
package clip

import (
	"strconv"
	"unicode/utf8"
)

// String returns s if it has at most n bytes. Otherwise it returns the
// longest prefix of s of at most n bytes that does not split a UTF-8
// sequence, followed by "...": String("abcdef", 3) is "abc...". A negative
// n counts as zero.
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:cut(s, n)] + "..."
}

// Counted is [String] with the length of s in the mark: the prefix is
// followed by "…(N bytes)", where N is len(s). Counted("abcdef", 3) is
// "abc…(6 bytes)".
func Counted(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:cut(s, n)] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// cut returns the length of the longest prefix of s, which is longer than
// n bytes, of at most n bytes that ends on a rune boundary.
func cut(s string, n int) int {
	c := max(n, 0)
	// Back up over continuation bytes to the start of the sequence the cut
	// falls in, unless the prefix already ends on a whole one.
	for c > 0 && !utf8.RuneStart(s[c]) {
		c--
	}
	return c
}
