package api

import (
	"slices"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The vocabularies a read asks for keep their order, once each; unknown
// ones and overlong lists are refused.
func TestVocabulariesFromPB(t *testing.T) {
	var v violations
	asked := vocabulariesFromPB(&v, []pb.Vocabulary{pb.Vocabulary_VOCABULARY_AZURE, pb.Vocabulary_VOCABULARY_NOVA, pb.Vocabulary_VOCABULARY_AZURE})
	if len(v) > 0 || !slices.Equal(asked, []vocabulary.Vocabulary{vocabulary.Azure, vocabulary.Nova}) {
		t.Fatalf("asked %v, violations %v", asked, v)
	}
	v = nil
	if vocabulariesFromPB(&v, []pb.Vocabulary{pb.Vocabulary_VOCABULARY_UNSPECIFIED, 42}); len(v) != 2 {
		t.Errorf("unknown vocabularies accepted: %v", v)
	}
	v = nil
	if vocabulariesFromPB(&v, make([]pb.Vocabulary, 100000)); len(v) != 1 {
		t.Errorf("a long list gave %d violations, want one", len(v))
	}
}
