// Package ids makes the coordinator's record ids. They are chosen by the
// leader before a command is proposed, so every replica applies the same id.
package ids

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns prefix followed by 20 random hex digits, e.g. "i-3f9a…".
func New(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // the kernel's random source does not fail
	}
	return prefix + hex.EncodeToString(b[:])
}
