package hypervisor

import (
	"errors"
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// Rules for a password set inside a guest (SetPassword), shared by the API
// that takes it and the agent that passes it on: one definition, so the
// API cannot accept what a host would refuse.

// MaxGuestPasswordBytes bounds a password: it travels hex-encoded on one
// guest channel line.
const MaxGuestPasswordBytes = 64

var guestUserPattern = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidGuestUser reports whether user is a POSIX user name a guest takes.
func ValidGuestUser(user string) bool { return guestUserPattern.MatchString(user) }

// ErrInvalidPassword is wrapped by CheckGuestPassword's refusals. None of
// them quotes the password.
var ErrInvalidPassword = errors.New("invalid password")

// CheckGuestPassword checks a password's form: 1 to MaxGuestPasswordBytes
// bytes of UTF-8 without control characters.
func CheckGuestPassword(pw string) error {
	switch {
	case pw == "":
		return fmt.Errorf("%w: is required", ErrInvalidPassword)
	case len(pw) > MaxGuestPasswordBytes:
		return fmt.Errorf("%w: must be at most %d bytes", ErrInvalidPassword, MaxGuestPasswordBytes)
	case !utf8.ValidString(pw):
		return fmt.Errorf("%w: must be UTF-8", ErrInvalidPassword)
	}
	for _, r := range pw {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: must not contain control characters", ErrInvalidPassword)
		}
	}
	return nil
}
