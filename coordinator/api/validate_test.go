package api

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The hand-written patterns must accept exactly what the regular
// expressions in their comments accept.
func TestPatternsMatchTheirRegexps(t *testing.T) {
	cases := []struct {
		name string
		pat  pattern
		re   *regexp.Regexp
	}{
		{"name", namePat, regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)},
		{"image", imagePat, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)},
		{"request id", requestIDPat, regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)},
		{"id", idPat, regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)},
	}
	// Strings over an alphabet holding every class boundary and a few
	// bytes no pattern allows, of every length around the limits.
	// Half the strings use only bytes some pattern allows, so that many match.
	alphabets := []string{"az09AZ-._:/ \n\x00\xffé", "az09AZ-._:"}
	fixed := []string{"", "a", "-", "a-", "-a", "a-b", "web-1", "i-3f9a", "flotilla-test", "img.qcow2", "x..y", "req:1", "A", "Z9",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 62) + "-"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		inputs := append([]string(nil), fixed...)
		for i := 0; i < 20000; i++ {
			n := rng.IntN(131)
			b := make([]byte, n)
			alphabet := alphabets[i%2]
			for j := range b {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			}
			inputs = append(inputs, string(b))
		}
		for _, s := range inputs {
			if got, want := c.pat.MatchString(s), c.re.MatchString(s); got != want {
				t.Errorf("%s: %q: pattern says %v, regexp %v", c.name, s, got, want)
			}
		}
	}
}
