package hypervisor

import (
	"strings"
	"testing"
)

func TestGuestPasswordRules(t *testing.T) {
	users := map[string]bool{"root": true, "_svc": true, "ops-1": true, "a" + strings.Repeat("b", 31): true,
		"": false, "Root": false, "1ops": false, "a b": false, "a" + strings.Repeat("b", 32): false, "../x": false, "ro\not": false}
	for u, ok := range users {
		if ValidGuestUser(u) != ok {
			t.Errorf("ValidGuestUser(%q) = %v", u, !ok)
		}
	}
	pws := map[string]bool{"x": true, "correct horse battery staple": true, "pässwörd ✓": true, strings.Repeat("p", 64): true,
		"": false, strings.Repeat("p", 65): false, "a\nb": false, "a\x00b": false, "tab\there": false, "\xff\xfe": false, "del\x7f": false}
	for pw, ok := range pws {
		err := CheckGuestPassword(pw)
		if (err == nil) != ok {
			t.Errorf("CheckGuestPassword(%q) = %v", pw, err)
		}
		if err != nil && pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("the refusal quotes the password: %v", err)
		}
	}
}
