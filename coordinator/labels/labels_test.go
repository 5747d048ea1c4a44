package labels

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	many := map[string]string{}
	for i := range Max + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name string
		m    map[string]string
		ok   bool
	}{
		{"none", nil, true},
		{"plain", map[string]string{"rack": "r1", "zone/a": ""}, true},
		{"too many", many, false},
		{"long key", map[string]string{strings.Repeat("k", 64): "v"}, false},
		{"long value", map[string]string{"k": strings.Repeat("v", 64)}, false},
		{"escape", map[string]string{"k": "\x1b[2J"}, false},
		{"empty key", map[string]string{"": "v"}, false},
	}
	for _, c := range cases {
		if err := Check(c.m); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestPrintable(t *testing.T) {
	cases := []struct {
		s  string
		ok bool
	}{
		{"flotilla-agent 1.2.3 (go1.26)", true},
		{"", true},
		{"v1\x00", false},
		{"v1\nFAKE ROW", false},
		{"\x1b]0;pwned\x07", false},
		{"\xff", false},
		{strings.Repeat("a", 129), false},
	}
	for _, c := range cases {
		if err := Printable(c.s, 128); (err == nil) != c.ok {
			t.Errorf("%q: %v", c.s, err)
		}
	}
}
