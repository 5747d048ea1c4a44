package apidoc

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update-doc", false, "rewrite docs/api.md from the protos")

const docPath = "../../docs/api.md"

// TestAPIReference fails when docs/api.md no longer says what the protos
// do: run make docs.
func TestAPIReference(t *testing.T) {
	got, err := Render("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## flotilla.v1.InstanceService", "### SetPassword", "| `password` | string |", "`STATUS_SETTING_PASSWORD`"} {
		if !strings.Contains(got, want) {
			t.Errorf("the reference lacks %q", want)
		}
	}
	if *update {
		if err := os.WriteFile(docPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(docPath)
	if err != nil || string(have) != got {
		t.Fatal("docs/api.md is stale: run make docs")
	}
}
