package input

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxIDBytes is the longest ID or name, in bytes, that the sample mesh's
// services accept.
const MaxIDBytes = 128

// ClipBytes is the most bytes of a caller's text that [Clip] keeps.
const ClipBytes = 64

var errEmpty = errors.New("must not be empty")

// CheckID returns what is wrong with id, a required ID or name a caller
// sent: empty ("must not be empty") or longer than [MaxIDBytes] ("must be
// at most 128 bytes, got 1048576"); nil if nothing is. The message does not
// name the field and repeats nothing of id: the caller prefixes the field,
// as in "order_id: must not be empty".
func CheckID(id string) error {
	if id == "" {
		return errEmpty
	}
	return CheckOptionalID(id)
}

// CheckOptionalID is [CheckID] for an ID that may be empty: it only bounds
// the length.
func CheckOptionalID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("must be at most %d bytes, got %d", MaxIDBytes, len(id))
	}
	return nil
}

// Clip returns s, a caller's text, cut to at most [ClipBytes] bytes for an
// error message or a log line; see [ClipTo].
func Clip(s string) string { return ClipTo(s, ClipBytes) }

// ClipTo returns s if it has at most n bytes. Otherwise it returns the
// longest prefix of s of at most n bytes that does not split a UTF-8
// sequence, followed by "…(N bytes)", where N is the length of s:
// ClipTo("abcdef", 3) is "abc…(6 bytes)". A negative n counts as zero.
func ClipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	// Back up over continuation bytes to the start of the cut sequence,
	// unless the prefix already ends on a whole one.
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
