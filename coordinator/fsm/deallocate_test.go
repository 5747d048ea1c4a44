package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// TestDeallocateReleasesRoomAndStartPlacesAgain: a stopped instance's
// deallocate frees its host's room (another instance can take it); a
// running one is refused and told to stop; the start that follows goes
// back to the disk's host when it fits there, and otherwise elsewhere with
// the disk copied first.
func TestDeallocateReleasesRoomAndStartPlacesAgain(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 1, 512)
	h.register("h2", 1, 512)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	var nae *lifecycle.NotAllowedError
	if r := h.act("op-d0", lifecycle.ActionDeallocate); !errors.As(r.Err, &nae) {
		t.Fatalf("deallocate of a running instance: %v", r.Err)
	}
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-stop", InstanceID: "i", Deadline: h.now.Add(time.Hour)}})
	h.finishAll("op-stop")
	if r := h.act("op-d", lifecycle.ActionDeallocate); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := h.status("i"); got != lifecycle.StatusDeallocating || h.word(vocabulary.Azure) != "deallocating" {
		t.Fatalf("deallocating: %s, azure %s", got, h.word(vocabulary.Azure))
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 {
		t.Fatalf("room released before the domain is: %+v", a)
	}
	h.finishAll("op-d")
	if got := h.status("i"); got != lifecycle.StatusDeallocated || h.word(vocabulary.Azure) != "deallocated" {
		t.Fatalf("deallocated: %s, azure %s", got, h.word(vocabulary.Azure))
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 0 || h.inst().HostID != "h1" {
		t.Fatalf("after deallocate: room %+v, disk on %q", a, h.inst().HostID)
	}
	// Another instance takes the room.
	if r := h.create("j", "h1", 1, 512, ""); r.Err != nil {
		t.Fatalf("h1 after the deallocate: %v", r.Err)
	}
	if r := h.act("op-s0", lifecycle.ActionStart); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("start with h1 full: %v", r.Err)
	}
	// Elsewhere: the disk goes to h2 first.
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStart, Operation: state.Operation{
		ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Hour), TargetHostID: "h2", Token: "t0k3n"}})
	if got := h.status("i"); got != lifecycle.StatusStarting {
		t.Fatalf("starting: %s", got)
	}
	// preflight (h2), offer (h1), copy (h2), start (h2), remove (h1).
	h.stepHosts("op-s", []string{"h2", "h1", "h2", "h2", "h1"}, nil)
	i := h.inst()
	if i.HostID != "h2" || i.Status() != lifecycle.StatusRunning || i.MoveTarget != "" {
		t.Fatalf("after the start: %s on %s (target %q)", i.Status(), i.HostID, i.MoveTarget)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 || a["h2"].VCPUs != 1 {
		t.Fatalf("room after the start: %+v", a)
	}
}

// TestStartOfDeallocatedOnItsHost: with room on the disk's host, the start
// defines the domain there again.
func TestStartOfDeallocatedOnItsHost(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 1, 512)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.act("op-stop", lifecycle.ActionStop)
	h.finishAll("op-stop")
	h.act("op-d", lifecycle.ActionDeallocate)
	h.finishAll("op-d")
	if r := h.act("op-s", lifecycle.ActionStart); r.Err != nil {
		t.Fatal(r.Err)
	}
	var names []string
	for _, s := range h.op("op-s").Steps {
		names = append(names, s.Name)
	}
	if len(names) != 3 || names[1] != "define-domain" {
		t.Fatalf("steps %v", names)
	}
	h.stepHosts("op-s", []string{"h1", "h1", "h1"}, nil)
	if i := h.inst(); i.HostID != "h1" || i.Status() != lifecycle.StatusRunning {
		t.Fatalf("after the start: %s on %s", i.Status(), i.HostID)
	}
	// A failed release is undone: the domain is defined again, stopped.
	h.act("op-stop2", lifecycle.ActionStop)
	h.finishAll("op-stop2")
	h.act("op-d2", lifecycle.ActionDeallocate)
	h.mustReport(Finish{OperationID: "op-d2", Succeeded: false, Fault: fault("HYPERVISOR_REFUSED")})
	h.finishAll("op-d2")
	if op := h.op("op-d2"); op.State != state.OpFailed {
		t.Fatalf("failed release: %s %v", op.State, stepStates(op))
	}
}
