package main

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// wireEnum is a generated protobuf enum.
type wireEnum interface {
	~int32
	protoreflect.Enum
}

// flagWord is how flags spell an enum value: its proto name without the
// enum's prefix, in lowercase, '-' for '_' (VOCABULARY_MANAGE_INSTANCE is
// manage-instance). The proto is the one list of values: flags add none.
func flagWord[E wireEnum](v E) string {
	values := v.Descriptor().Values()
	prefix := strings.TrimSuffix(string(values.ByNumber(0).Name()), "UNSPECIFIED")
	ev := values.ByNumber(v.Number())
	if ev == nil {
		return ""
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(string(ev.Name()), prefix)), "_", "-")
}

// parseFlagWord is the enum value a flag spells as word (exactly, as
// flagWord spells it); UNSPECIFIED is never one.
func parseFlagWord[E wireEnum](word string) (E, bool) {
	var zero E
	values := zero.Descriptor().Values()
	for i := range values.Len() {
		if v := E(values.Get(i).Number()); v != zero && flagWord(v) == word {
			return v, true
		}
	}
	return zero, false
}
