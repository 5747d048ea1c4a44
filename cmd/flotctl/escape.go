package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// escape makes a string from the server safe to print on a terminal:
// control characters (C0, DEL, C1), bidirectional overrides and invalid
// UTF-8 are shown as \xNN or \u{NNNN} escapes, so a name or a message
// cannot move the cursor, clear the screen or fake another line. A
// backslash stays as it is.
func escape(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u{%04x}`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case unicode.IsControl(r): // C0, DEL and C1
		return true
	case unicode.Is(unicode.Bidi_Control, r):
		return true
	}
	return false
}
