package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

func (h *harness) softDelete(opID string, force bool) Result {
	h.t.Helper()
	return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, Retain: true,
		Operation: state.Operation{ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Hour), Force: force}})
}

// reclaim is the retention loop's proposal at the harness's clock.
func (h *harness) reclaim(opID string, window time.Duration) Result {
	h.t.Helper()
	return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, ReclaimBefore: h.now.Add(-window),
		Operation: state.Operation{ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Hour), Force: true}})
}

// TestSoftDeleteRestoreAndReclaim: a delete with a retention window keeps
// the instance SOFT_DELETED, holding its room; a restore brings it back as
// it was; a reclaim before the window ends is refused, one after it
// deletes the instance, and a restore after that is refused.
func TestSoftDeleteRestoreAndReclaim(t *testing.T) {
	const window = time.Hour
	h := newHarness(t)
	h.register("h1", 1, 512)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	if r := h.softDelete("op-sd", false); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := h.status("i"); got != lifecycle.StatusDeleting {
		t.Fatalf("soft deleting: %s", got)
	}
	h.finishAll("op-sd")
	if got := h.status("i"); got != lifecycle.StatusSoftDeleted || h.word(vocabulary.Nova) != "SOFT_DELETED" {
		t.Fatalf("soft deleted: %s, nova %s", got, h.word(vocabulary.Nova))
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 {
		t.Fatalf("a soft-deleted instance holds its room: %+v", a)
	}
	if r := h.reclaim("op-early", window); !errors.Is(r.Err, ErrNotAllowed) {
		t.Fatalf("reclaim within the window: %v", r.Err)
	}
	if r := h.act("op-r", lifecycle.ActionRestore); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := h.status("i"); got != lifecycle.StatusRestoring {
		t.Fatalf("restoring: %s", got)
	}
	h.finishAll("op-r")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.Desired != lifecycle.DesiredRunning {
		t.Fatalf("restored: %s, desired %s", i.Status(), i.Desired)
	}
	// A stopped one comes back stopped.
	h.act("op-stop", lifecycle.ActionStop)
	h.finishAll("op-stop")
	h.softDelete("op-sd2", false)
	h.finishAll("op-sd2")
	h.act("op-r2", lifecycle.ActionRestore)
	if names := len(h.op("op-r2").Steps); names != 1 {
		t.Fatalf("restore to stopped: %v", stepStates(h.op("op-r2")))
	}
	h.finishAll("op-r2")
	if got := h.status("i"); got != lifecycle.StatusStopped {
		t.Fatalf("restored: %s", got)
	}
	// The window passes (the fake clock moves on): the reclaim deletes it.
	h.softDelete("op-sd3", false)
	h.finishAll("op-sd3")
	h.now = h.now.Add(window / 2)
	if r := h.reclaim("op-early2", window); !errors.Is(r.Err, ErrNotAllowed) {
		t.Fatalf("reclaim half way: %v", r.Err)
	}
	h.now = h.now.Add(window)
	if r := h.reclaim("op-reclaim", window); r.Err != nil {
		t.Fatalf("reclaim after the window: %v", r.Err)
	}
	h.finishAll("op-reclaim")
	if got := h.status("i"); got != lifecycle.StatusDeleted {
		t.Fatalf("reclaimed: %s", got)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 0 {
		t.Fatalf("room after the reclaim: %+v", a)
	}
	var nae *lifecycle.NotAllowedError
	if r := h.act("op-late", lifecycle.ActionRestore); !errors.As(r.Err, &nae) {
		t.Fatalf("restore after reclaim: %v", r.Err)
	}
	if r := h.reclaim("op-again", window); !errors.Is(r.Err, ErrNotAllowed) {
		t.Fatalf("a second reclaim: %v", r.Err)
	}
}

// TestForcedDeleteReclaimsAtOnce: force skips the window, and a delete of
// a soft-deleted instance reclaims it.
func TestForcedDeleteReclaimsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 1, 512)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.softDelete("op-f", true)
	if op := h.op("op-f"); op.Kind != lifecycle.OpDelete {
		t.Fatalf("forced delete is a %s", op.Kind)
	}
	h.finishAll("op-f")
	if got := h.status("i"); got != lifecycle.StatusDeleted {
		t.Fatalf("forced: %s", got)
	}
	h2 := newHarness(t)
	h2.register("h1", 1, 512)
	h2.create("i", "h1", 1, 512, "")
	h2.finishAll("op-i")
	h2.softDelete("op-sd", false)
	h2.finishAll("op-sd")
	h2.softDelete("op-del", false)
	if op := h2.op("op-del"); op.Kind != lifecycle.OpDelete {
		t.Fatalf("delete of a soft-deleted instance is a %s", op.Kind)
	}
	h2.finishAll("op-del")
	if got := h2.status("i"); got != lifecycle.StatusDeleted {
		t.Fatalf("deleted: %s", got)
	}
}
