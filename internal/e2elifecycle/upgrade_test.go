package e2elifecycle

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// imageDir makes an image directory holding the test guest twice: as
// flotilla-test and as flotilla-test-v2, a second "image version".
func imageDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	src := filepath.Join(testenv.ImageDir(), "flotilla-test")
	for _, name := range []string{"flotilla-test", "flotilla-test-v2"} {
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	}
	return dir
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// statuses records every status a watch shows for instances.
type statuses struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (s *statuses) record(w *testenv.Stream) {
	for m := range w.C {
		insts, _ := m["instances"].([]any)
		for _, raw := range insts {
			i, _ := raw.(map[string]any)
			id, st := testenv.Str(i, "id"), testenv.Str(i, "status")
			s.mu.Lock()
			if l := s.seen[id]; len(l) == 0 || l[len(l)-1] != st {
				s.seen[id] = append(l, st)
			}
			s.mu.Unlock()
		}
	}
}

func (s *statuses) of(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen[id]...)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestUpgradeRollsBackOnRealLibvirt: an upgrade to an image version whose
// guest never becomes healthy (user data "flotilla-test: fail": its boot
// says FAILED) rolls back by itself: the instance shows UPGRADING, then
// ROLLBACK, then RUNNING again on its previous disk (the very file) and
// image, the fault saying why; no snapshot is left behind. Then an agent
// killed (SIGKILL) while an upgraded guest's health is awaited: the
// restarted agent waits for its health again, the upgrade finishes, and
// no disk (nor the snapshot) is orphaned.
func TestUpgradeRollsBackOnRealLibvirt(t *testing.T) {
	e := newEnv(t, nil, []string{"--image-dir=" + imageDir(t)})
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", map[string]any{})
	seen := &statuses{seen: map[string][]string{}}
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision")})
	go seen.record(w)
	defer w.Close()

	a := e.create("lc2-upgrade-a", "flotilla-test: fail")
	e.waitGuestReady(a, 1)
	before := inode(t, e.disk(a))
	op := e.do("UpgradeInstance", map[string]any{"id": a, "image": "flotilla-test-v2", "healthTimeout": "60s", "gracefulTimeout": "5s"})
	if got := testenv.Str(op, "state"); got != "OPERATION_STATE_FAILED" {
		t.Fatalf("upgrade to an unhealthy image: %s (%s)", got, testenv.Str(op, "error"))
	}
	e.waitStatus(a, "STATUS_RUNNING", 60*time.Second)
	inst := e.instance(a)
	if got := testenv.Str(inst, "spec", "image"); got != "flotilla-test" {
		t.Fatalf("image after the rollback: %q", got)
	}
	if got := testenv.Str(inst, "provisioningResult"); got != "PROVISIONING_RESULT_ROLLED_BACK" {
		t.Fatalf("result %q", got)
	}
	if f := testenv.Str(inst, "fault", "message"); !strings.Contains(f, "boot failed") {
		t.Fatalf("fault %q does not say why", f)
	}
	if got := inode(t, e.disk(a)); got != before {
		t.Fatal("the instance does not run on its previous disk")
	}
	if exists(filepath.Join(e.agent.DiskDir, a+".original.qcow2")) {
		t.Fatal("the snapshot was left behind")
	}
	testenv.Eventually(t, 10*time.Second, "the watch to show UPGRADING then ROLLBACK", func() bool {
		l := seen.of(a)
		return contains(l, "STATUS_UPGRADING") && contains(l, "STATUS_ROLLBACK")
	})
	if s := domstate(t, a); s != "running" {
		t.Fatalf("domain after the rollback: %s", s)
	}

	// The agent dies while the upgraded guest's health is awaited.
	b := e.create("lc2-upgrade-b", "flotilla-test: slow=60")
	e.waitStatus(b, "STATUS_RUNNING", 60*time.Second)
	before = inode(t, e.disk(b))
	// The first upgrade's health wait is in the agent's log already.
	awaits := e.agent.LogCount("STEP_ACTION_AWAIT_HEALTHY")
	opID := e.start("UpgradeInstance", map[string]any{"id": b, "image": "flotilla-test-v2", "healthTimeout": "120s", "gracefulTimeout": "5s"})
	testenv.Eventually(t, 90*time.Second, "the agent to await the upgraded guest's health", func() bool {
		return e.agent.LogCount("STEP_ACTION_AWAIT_HEALTHY") > awaits
	})
	e.agent.Kill()
	e.agent.Restart()
	// Waiting for health changes nothing on the host, so the restarted
	// agent waits again (agent/stepcheck) and the slow guest makes it.
	op = e.waitOp(opID)
	if got := testenv.Str(op, "state"); got != "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("upgrade after the agent died: %s (%s)", got, testenv.Str(op, "error"))
	}
	e.waitStatus(b, "STATUS_RUNNING", 60*time.Second)
	if got := testenv.Str(e.instance(b), "spec", "image"); got != "flotilla-test-v2" {
		t.Fatalf("image after the resumed upgrade: %q", got)
	}
	if s := domstate(t, b); s != "running" {
		t.Fatalf("domain after the resumed upgrade: %s", s)
	}
	left, _ := filepath.Glob(filepath.Join(e.agent.DiskDir, b+"*"))
	for _, f := range left {
		if f != e.disk(b) && !strings.HasSuffix(f, ".seed.iso") {
			t.Fatalf("orphaned file: %s (all: %v)", f, left)
		}
	}
}
