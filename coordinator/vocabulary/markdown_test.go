package vocabulary

import (
	"flag"
	"os"
	"testing"
)

var updateDoc = flag.Bool("update-doc", false, "rewrite docs/vocabularies.md from the tables")

const docPath = "../../docs/vocabularies.md"

// TestVocabulariesDoc fails when docs/vocabularies.md no longer says what
// the tables do; `make docs` rewrites it.
func TestVocabulariesDoc(t *testing.T) {
	want := Markdown()
	if *updateDoc {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if string(got) != want {
		t.Fatal("docs/vocabularies.md is stale: run make docs")
	}
}
