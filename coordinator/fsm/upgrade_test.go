package fsm

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

func (h *harness) upgrade(opID string, to state.Spec) Result {
	h.t.Helper()
	return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionUpgrade, Operation: state.Operation{
		ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Hour), Force: true, Resize: &state.Resize{To: to, Window: time.Minute}}})
}

// TestUpgradeRollsBackWhenTheGuestIsNotHealthy: an upgrade whose guest
// does not become healthy shows UPGRADING, then ROLLBACK while the
// previous disk and model come back, then RUNNING on them with the fault.
func TestUpgradeRollsBackWhenTheGuestIsNotHealthy(t *testing.T) {
	h := newResizeHarness(t)
	v2 := small
	v2.Image = "img-v2"
	if r := h.upgrade("op-up", v2); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.status("i") != lifecycle.StatusUpgrading || h.word(vocabulary.ManagedInstance) != "UPGRADING" {
		t.Fatalf("upgrading: %s, %s", h.status("i"), h.word(vocabulary.ManagedInstance))
	}
	// preflight, stop, upgrade-disk, boot-upgraded.
	for range 4 {
		h.running("op-up")
	}
	if got := h.inst().Spec.Image; got != "img-v2" {
		t.Fatalf("after upgrade-disk the spec's image is %q", got)
	}
	op := h.op("op-up")
	if st := op.Current(); st == nil || st.Action != lifecycle.ActAwaitHealthy || st.Timeout != time.Minute {
		t.Fatalf("at %+v", st)
	}
	h.mustReport(Finish{OperationID: "op-up", Succeeded: false, Fault: fault("GUEST_FAILED")})
	if h.status("i") != lifecycle.StatusRollback || h.word(vocabulary.ManagedInstance) != "ROLLBACK" {
		t.Fatalf("rolling back: %s, %s", h.status("i"), h.word(vocabulary.ManagedInstance))
	}
	h.finishAll("op-up")
	i := h.inst()
	if i.Status() != lifecycle.StatusRunning || i.Spec != small || i.Result != lifecycle.ResultRolledBack || i.Fault == nil || i.Fault.Code != "GUEST_FAILED" {
		t.Fatalf("after the rollback: %s %+v %s %+v", i.Status(), i.Spec, i.Result, i.Fault)
	}
	var undone []string
	for _, s := range h.op("op-up").Steps {
		if s.IsUndo {
			undone = append(undone, s.Name)
		}
	}
	if len(undone) != 3 || undone[0] != "stop-upgraded" || undone[1] != "rollback-disk" || undone[2] != "start-domain" {
		t.Fatalf("undo steps %v", undone)
	}
	// A healthy one: the new image stays, the snapshot is dropped.
	if r := h.upgrade("op-up2", v2); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.finishAll("op-up2")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.Spec != v2 || i.Result != lifecycle.ResultSucceeded {
		t.Fatalf("after the upgrade: %s %+v %s", i.Status(), i.Spec, i.Result)
	}
	// Nothing to change is refused.
	if r := h.upgrade("op-up3", v2); r.Err == nil {
		t.Fatal("an upgrade to what it has was accepted")
	}
}
