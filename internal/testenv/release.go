package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// PreviousRelease is the release a rolling upgrade starts from: the tag
// v0.13.0, the last release before log versions (its commit is named too,
// as a clone need not carry tags).
const (
	PreviousRelease       = "v0.13.0"
	PreviousReleaseCommit = "884974ece802882bf352bc93102895e5557d3afe"
)

// PreviousReleaseBinaries builds the commands of PreviousRelease from this
// repository's history (git archive of its commit, built with the same Go
// and module cache) into a directory that is removed when the test ends.
func PreviousReleaseBinaries(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	if _, err := exec.LookPath("git"); err != nil {
		Missing(t, "git, to build the previous release")
	}
	have := func() bool {
		return exec.Command("git", "-C", root, "cat-file", "-e", PreviousReleaseCommit+"^{commit}").Run() == nil
	}
	if !have() {
		// A shallow clone (as some CI systems make) lacks the history:
		// fetch it from where the clone came from.
		if out, err := exec.Command("git", "-C", root, "fetch", "--quiet", "--unshallow").CombinedOutput(); err != nil {
			t.Logf("git fetch --unshallow: %v\n%s", err, out)
		}
	}
	if !have() {
		Missing(t, fmt.Sprintf("commit %s (%s) in %s's history: a clone with history is needed", PreviousReleaseCommit, PreviousRelease, root))
	}
	src, bin := t.TempDir(), t.TempDir()
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", PreviousReleaseCommit)
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	tar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tar.Stdin = pipe
	if err := tar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", PreviousReleaseCommit, err, stderr.String())
	}
	if err := tar.Wait(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/flotilla-coordinator", "./cmd/flotilla-agent")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", PreviousRelease, err, out)
	}
	if _, err := os.Stat(filepath.Join(bin, "flotilla-coordinator")); err != nil {
		t.Fatal(err)
	}
	return bin
}
