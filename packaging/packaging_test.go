// Package packaging holds what installs Flotilla on a host (systemd units;
// make install puts them in place). Its test checks the units.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestSystemdUnits: systemd-analyze verify accepts both units, with their
// ExecStart pointing at this tree's binaries (as make install points them
// at PREFIX's), and every flag a unit passes is one its binary takes.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found (scripts/setup-host.sh installs systemd)")
		}
		t.Skip("systemd-analyze not found")
	}
	bin := testenv.Binaries(t)
	dir := t.TempDir()
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 2 {
		t.Fatalf("units: %v", units)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(u)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		// The flags of ExecStart, without the operator's $ARGS, parse.
		for _, l := range strings.Split(text, "\n") {
			if !strings.HasPrefix(l, "ExecStart=") {
				continue
			}
			f := strings.Fields(strings.TrimPrefix(l, "ExecStart="))
			var args []string
			for _, a := range f[1:] {
				if !strings.HasPrefix(a, "$") {
					args = append(args, a)
				}
			}
			out, err := exec.Command(f[0], append(args, "--help")...).CombinedOutput()
			if strings.Contains(string(out), "flag provided but not defined") {
				t.Errorf("%s: %s", u, out)
			}
			_ = err // --help exits non-zero
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "flotilla-coordinator.service"), filepath.Join(dir, "flotilla-agent.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
