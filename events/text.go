package events

import "unicode"

// UnsafeRune reports whether r may not appear in request text that events
// store and readers display (a source's device ID, platform and user agent,
// an attempt ID): control characters (C0, DEL, C1), the Unicode line and
// paragraph separators (U+2028, U+2029), and the bidirectional formatting
// characters. Each of these can forge or reorder a line where the text is
// shown: an ANSI escape, a newline, a right-to-left override.
func UnsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r): // U+0000–U+001F, U+007F–U+009F
		return true
	case r == '\u2028', r == '\u2029':
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f': // ALM, LRM, RLM
		return true
	case r >= '\u202a' && r <= '\u202e': // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= '\u2066' && r <= '\u2069': // LRI, RLI, FSI, PDI
		return true
	}
	return false
}
