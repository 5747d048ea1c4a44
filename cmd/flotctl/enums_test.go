package main

import (
	"testing"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// wordsRoundTrip checks every value but UNSPECIFIED has a word that parses
// back to it, and that UNSPECIFIED has none.
func wordsRoundTrip[E wireEnum](t *testing.T) {
	var zero E
	values := zero.Descriptor().Values()
	for i := range values.Len() {
		v := E(values.Get(i).Number())
		got, ok := parseFlagWord[E](flagWord(v))
		if v == zero {
			if ok {
				t.Errorf("UNSPECIFIED parses as %v", got)
			}
			continue
		}
		if !ok || got != v {
			t.Errorf("%v is spelled %q, which parses as %v (%v)", v, flagWord(v), got, ok)
		}
	}
}

func TestFlagWords(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		wordsRoundTrip[flotillav1.Vocabulary](t)
		wordsRoundTrip[flotillav1.RecoveryPolicy](t)
		wordsRoundTrip[flotillav1.DrainPolicy](t)
	})
	// The words users type, as the help and docs spell them.
	for _, c := range []struct {
		word string
		got  func(string) (int32, bool)
		want int32
	}{
		{"manage-instance", parsed[flotillav1.Vocabulary], int32(flotillav1.Vocabulary_VOCABULARY_MANAGE_INSTANCE)},
		{"nova", parsed[flotillav1.Vocabulary], int32(flotillav1.Vocabulary_VOCABULARY_NOVA)},
		{"rightscale", parsed[flotillav1.Vocabulary], int32(flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE)},
		{"azure", parsed[flotillav1.Vocabulary], int32(flotillav1.Vocabulary_VOCABULARY_AZURE)},
		{"managed-instance", parsed[flotillav1.Vocabulary], int32(flotillav1.Vocabulary_VOCABULARY_MANAGED_INSTANCE)},
		{"leave", parsed[flotillav1.RecoveryPolicy], int32(flotillav1.RecoveryPolicy_RECOVERY_POLICY_LEAVE)},
		{"restart", parsed[flotillav1.RecoveryPolicy], int32(flotillav1.RecoveryPolicy_RECOVERY_POLICY_RESTART)},
		{"mark-failed", parsed[flotillav1.RecoveryPolicy], int32(flotillav1.RecoveryPolicy_RECOVERY_POLICY_MARK_FAILED)},
		{"stop", parsed[flotillav1.DrainPolicy], int32(flotillav1.DrainPolicy_DRAIN_POLICY_STOP)},
		{"move", parsed[flotillav1.DrainPolicy], int32(flotillav1.DrainPolicy_DRAIN_POLICY_MOVE)},
		{"unspecified", parsed[flotillav1.DrainPolicy], -1},
		{"MOVE", parsed[flotillav1.DrainPolicy], -1},
		{"mark_failed", parsed[flotillav1.RecoveryPolicy], -1},
		{"", parsed[flotillav1.Vocabulary], -1},
	} {
		if got, ok := c.got(c.word); (ok && got != c.want) || (!ok && c.want != -1) {
			t.Errorf("%q parses as %d (%v), want %d", c.word, got, ok, c.want)
		}
	}
}

// parsed is parseFlagWord with the value as a number (-1: not a word).
func parsed[E wireEnum](word string) (int32, bool) {
	v, ok := parseFlagWord[E](word)
	if !ok {
		return -1, false
	}
	return int32(v), true
}
