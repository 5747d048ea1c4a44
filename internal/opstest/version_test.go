package opstest

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// Every binary says what it is with --version: version, commit, build
// date and Go release, and exits 0.
func TestVersionFlag(t *testing.T) {
	bin := testenv.Binaries(t)
	for _, prog := range []string{"flotilla-coordinator", "flotilla-agent", "flotctl"} {
		out, err := exec.Command(filepath.Join(bin, prog), "--version").Output()
		if err != nil {
			t.Errorf("%s --version: %v", prog, err)
			continue
		}
		want := regexp.MustCompile(`^` + prog + ` (devel|v\d+\.\d+\.\d+\S*)\ncommit: \S+( \(modified\))?\nbuilt: \S+\ngo: go1\.\d+\S*\n$`)
		if !want.Match(out) {
			t.Errorf("%s --version printed %q", prog, out)
		}
	}
}
