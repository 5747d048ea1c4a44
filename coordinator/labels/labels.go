// Package labels holds the one rule for labels (an instance's own, a
// host's, and the host labels a placement requires) and for the other
// short strings the coordinator keeps from outside: bounded in number and
// size and printable, so no record can grow every list without bound or
// carry terminal escapes to whoever prints it.
package labels

import (
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// Max bounds the labels of one record.
const Max = 64

var (
	keyRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	valueRE = regexp.MustCompile(`^[A-Za-z0-9._/-]{0,63}$`)
)

// Check returns why m is not a valid set of labels, or nil.
func Check(m map[string]string) error {
	if len(m) > Max {
		return fmt.Errorf("at most %d labels, got %d", Max, len(m))
	}
	for k, v := range m {
		if !keyRE.MatchString(k) || !valueRE.MatchString(v) {
			return fmt.Errorf("label %q=%q: keys and values are letters, digits, '.', '_', '/' and '-', at most 63 characters", Truncate(k), Truncate(v))
		}
	}
	return nil
}

// Printable returns why s is not printable UTF-8 of at most max bytes, or nil.
func Printable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("at most %d bytes, got %d", max, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not UTF-8", Truncate(s))
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q holds a control or non-printing character", Truncate(s))
		}
	}
	return nil
}

// Truncate shortens s for an error message.
func Truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
