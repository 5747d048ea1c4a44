package e2elifecycle

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestSoftDeleteOnRealLibvirt: with a retention window, a delete keeps
// the guest's domain (off) and disk and holds its room; a restore within
// the window brings it back running; after the window the coordinator
// reclaims it by itself: the domain and disk are gone and the room is
// back; a restore then is refused.
func TestSoftDeleteOnRealLibvirt(t *testing.T) {
	const window = 15 * time.Second
	e := newEnv(t, []string{"--soft-delete-retention", window.String()}, []string{"--vcpus", "1"})
	a := e.create("lc2-soft-a", "")
	e.waitGuestReady(a, 1)

	op := e.do("DeleteInstance", map[string]any{"id": a})
	e.mustSucceed(op)
	if got := testenv.Str(op, "kind"); got != "OPERATION_KIND_SOFT_DELETE" {
		t.Fatalf("kind %s", got)
	}
	e.waitStatus(a, "STATUS_SOFT_DELETED", 30*time.Second)
	if s := domstate(t, a); s != "shut off" || !exists(e.disk(a)) {
		t.Fatalf("soft deleted: domain %q, disk kept %v", s, exists(e.disk(a)))
	}
	if got := e.word(a, "VOCABULARY_NOVA"); got != "SOFT_DELETED" {
		t.Fatalf("nova says %q", got)
	}
	// The host shows the room the soft-deleted instance holds.
	host := e.g.MustCall("flotilla.v1.HostService/GetHost", map[string]any{"id": e.host})
	if got := testenv.Str(host, "softDeleted", "vcpus"); got != "1" {
		t.Fatalf("host's soft-deleted room: %v", host["softDeleted"])
	}
	e.mustSucceed(e.do("RestoreInstance", map[string]any{"id": a}))
	e.waitStatus(a, "STATUS_RUNNING", 30*time.Second)
	e.waitGuestReady(a, 2)

	// Again, and this time the window passes.
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": a}))
	e.waitStatus(a, "STATUS_SOFT_DELETED", 30*time.Second)
	e.waitStatus(a, "STATUS_DELETED", window+60*time.Second)
	testenv.Eventually(t, 30*time.Second, "the domain and disk to be gone", func() bool {
		return domstate(t, a) == "missing" && !exists(e.disk(a))
	})
	_, err := e.g.Call("flotilla.v1.InstanceService/RestoreInstance", map[string]any{"id": a})
	if ce, ok := err.(*testenv.CallError); !ok || ce.Code != codes.FailedPrecondition {
		t.Fatalf("restore after the reclaim: %v", err)
	}
	// The room is back.
	c := e.create("lc2-soft-c", "")
	e.waitStatus(c, "STATUS_RUNNING", 30*time.Second)
	// A forced delete reclaims at once.
	op = e.do("DeleteInstance", map[string]any{"id": c, "force": true})
	e.mustSucceed(op)
	if got := testenv.Str(op, "kind"); got != "OPERATION_KIND_DELETE" {
		t.Fatalf("forced delete kind %s", got)
	}
	e.waitStatus(c, "STATUS_DELETED", 30*time.Second)
}
