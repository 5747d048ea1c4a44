package fsm

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

var (
	small = state.Spec{VCPUs: 1, MemoryMiB: 512, Image: "img"}
	large = state.Spec{VCPUs: 2, MemoryMiB: 1024, DiskGiB: 2, Image: "img"}
)

// newResizeHarness has instance i running on h1 at small, h2 empty.
func newResizeHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	return h
}

// resize asks for instance i at to on target ("" in place) as op opID.
func (h *harness) resize(opID, target string, to state.Spec, window time.Duration) Result {
	h.t.Helper()
	op := state.Operation{ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Hour), TargetHostID: target,
		Resize: &state.Resize{To: to, Window: window}}
	if target != "" && target != "h1" {
		op.Token = "t0k3n"
	}
	return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionResize, Operation: op})
}

func (h *harness) act(opID string, a lifecycle.Action) Result {
	h.t.Helper()
	return h.apply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Hour)}})
}

func (h *harness) inst() state.Instance {
	h.t.Helper()
	i, err := h.store.Instance("i")
	if err != nil {
		h.t.Fatal(err)
	}
	return i
}

// word renders instance i in vocabulary v.
func (h *harness) word(v vocabulary.Vocabulary) string {
	i := h.inst()
	return vocabulary.Render(v, vocabulary.Input{Facts: i.Facts(), LastOp: i.LastOpK}).Status
}

// stepHosts walks op opID to its end, checking each step runs where want
// says and is reported by that host, calling at before each step.
func (h *harness) stepHosts(opID string, want []string, at func(step string)) {
	h.t.Helper()
	for n, host := range want {
		op := h.op(opID)
		st := op.Current()
		if st == nil {
			h.t.Fatalf("step %d: operation ended: %v", n, stepStates(op))
		}
		if got := op.StepHost(st); got != host {
			h.t.Fatalf("step %d (%s) on %q, want %q", n, st.Name, got, host)
		}
		if at != nil {
			at(st.Name)
		}
		h.running(opID)
	}
	if op := h.op(opID); op.State != state.OpSucceeded {
		h.t.Fatalf("%s after its steps: %s %v", opID, op.State, stepStates(op))
	}
}

func TestResizeToAnotherHostThenConfirm(t *testing.T) {
	h := newResizeHarness(t)
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionResize, Operation: state.Operation{
		ID: "op-rs", InstanceID: "i", Deadline: h.now.Add(time.Hour), TargetHostID: "h2", Token: "t0k3n",
		Resize: &state.Resize{To: large}}})
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 || a["h2"].VCPUs != 2 || a["h2"].MemoryMiB != 1024 {
		t.Fatalf("room while resizing: %+v", a)
	}
	// preflight, freeze, offer-base, copy-base, refreeze, offer-mid, copy-mid,
	// stop, offer-top, copy-top, define, start; switch-host runs on the coordinator.
	hosts := []string{"h2", "h1", "h1", "h2", "h1", "h1", "h2", "h1", "h1", "h2", "h2", "h2"}
	h.stepHosts("op-rs", hosts, func(step string) {
		if h.status("i") != lifecycle.StatusResizing {
			t.Fatalf("at %s: %s", step, h.status("i"))
		}
		// The guest is down only for the last copy (Nova's RESIZED).
		down := step == "offer-top" || step == "copy-top-to-target" || step == "define-on-target" || step == "start-on-target"
		if got := h.word(vocabulary.Nova) == "RESIZED"; got != down {
			t.Fatalf("at %s: Nova says %s", step, h.word(vocabulary.Nova))
		}
		if h.word(vocabulary.ManageInstance) != "resizing" || h.word(vocabulary.ManagedInstance) != "EXTENDING" {
			t.Fatalf("at %s: %s, %s", step, h.word(vocabulary.ManageInstance), h.word(vocabulary.ManagedInstance))
		}
	})
	i := h.inst()
	if i.Status() != lifecycle.StatusVerifyResize || i.HostID != "h2" || i.Spec != large || i.Resize == nil || i.Resize.Source != "h1" {
		t.Fatalf("after the resize: %s on %s at %+v, %+v", i.Status(), i.HostID, i.Spec, i.Resize)
	}
	if h.word(vocabulary.Nova) != "VERIFY_RESIZE" || h.word(vocabulary.ManageInstance) != "running" {
		t.Fatalf("verify in words: %s, %s", h.word(vocabulary.Nova), h.word(vocabulary.ManageInstance))
	}
	// The original stays on h1, holding its room; h1's word on it is neither
	// the instance's state nor an orphan.
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 || a["h2"].VCPUs != 2 {
		t.Fatalf("room while unconfirmed: %+v", a)
	}
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: 1, Full: true, Observations: []Observation{{InstanceID: "i", Power: lifecycle.PowerShutOff, Time: h.now}}})
	if host, _ := h.store.Host("h1"); len(host.Orphans) != 0 || h.status("i") != lifecycle.StatusVerifyResize {
		t.Fatalf("h1's report of the original: orphans %v, %s", host.Orphans, h.status("i"))
	}
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionConfirmResize, Operation: state.Operation{ID: "op-c", InstanceID: "i", Deadline: h.now.Add(time.Hour)}})
	if h.status("i") != lifecycle.StatusConfirmingResize || h.word(vocabulary.Nova) != "VERIFY_RESIZE" {
		t.Fatalf("confirming: %s", h.status("i"))
	}
	h.stepHosts("op-c", []string{"h1"}, nil) // delete-original, on the original's host
	i = h.inst()
	if i.Status() != lifecycle.StatusRunning || i.Resize != nil || i.LastOpK != lifecycle.OpResize {
		t.Fatalf("after the confirm: %s %+v", i.Status(), i)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 0 || a["h2"].VCPUs != 2 {
		t.Fatalf("room after the confirm: %+v", a)
	}
}

func TestResizeRevertBringsTheOriginalBack(t *testing.T) {
	h := newResizeHarness(t)
	if r := h.resize("op-rs", "h2", large, 0); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.finishAll("op-rs")
	h.act("op-rv", lifecycle.ActionRevertResize)
	if h.status("i") != lifecycle.StatusRevertingResize || h.word(vocabulary.Nova) != "REVERT_RESIZE" {
		t.Fatalf("reverting: %s / %s", h.status("i"), h.word(vocabulary.Nova))
	}
	// stop-resized (h2), thaw-original (h1), start-original (h1), switch, remove-resized (h2)
	h.stepHosts("op-rv", []string{"h2", "h1", "h1", "h2"}, nil)
	i := h.inst()
	if i.Status() != lifecycle.StatusRunning || i.HostID != "h1" || i.Spec != small || i.Resize != nil {
		t.Fatalf("after the revert: %s on %s at %+v %+v", i.Status(), i.HostID, i.Spec, i.Resize)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 || a["h2"].VCPUs != 0 {
		t.Fatalf("room after the revert: %+v", a)
	}
}

func TestResizeFailureMidCopyRollsBack(t *testing.T) {
	h := newResizeHarness(t)
	h.resize("op-rs", "h2", large, 0)
	h.running("op-rs") // preflight on h2
	h.running("op-rs") // freeze-disk
	h.running("op-rs") // offer-base
	h.mustReport(Finish{OperationID: "op-rs", Fault: fault("AGENT_RESTARTED")})
	// The copy's outcome is unknown (its agent restarted): what it may have
	// staged on h2 is removed, then the source thawed.
	op := h.op("op-rs")
	if op.State != state.OpRollingBack || op.Current().Name != "remove-from-target" || op.StepHost(op.Current()) != "h2" ||
		h.word(vocabulary.Nova) != "REVERT_RESIZE" {
		t.Fatalf("rolling back: %s %v / %s", op.State, stepStates(op), h.word(vocabulary.Nova))
	}
	h.running("op-rs")
	if op := h.op("op-rs"); op.Current().Name != "thaw-disk" || op.StepHost(op.Current()) != "h1" {
		t.Fatalf("rolling back: %v", stepStates(op))
	}
	h.finishAll("op-rs")
	i := h.inst()
	if i.Status() != lifecycle.StatusRunning || i.HostID != "h1" || i.Spec != small || i.Resize != nil || i.MoveTarget != "" ||
		i.Result != lifecycle.ResultRolledBack {
		t.Fatalf("after the rollback: %s %+v", i.Status(), i)
	}
	if h.word(vocabulary.ManagedInstance) != "EXTENDEDFAILED" || h.word(vocabulary.ManageInstance) != "running" {
		t.Fatalf("in words: %s / %s", h.word(vocabulary.ManagedInstance), h.word(vocabulary.ManageInstance))
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 1 || a["h2"].VCPUs != 0 {
		t.Fatalf("room after the rollback: %+v", a)
	}
}

func TestResizeOfferedAgainWhenThePullIsRefused(t *testing.T) {
	h := newResizeHarness(t)
	h.resize("op-rs", "h2", large, 0)
	for range 3 { // preflight, freeze, offer-base
		h.running("op-rs")
	}
	h.mustReport(Finish{OperationID: "op-rs", Fault: fault(faultPeerRefused)})
	op := h.op("op-rs")
	if op.State == state.OpRollingBack || op.Current().Name != "offer-base" || op.StepHost(op.Current()) != "h1" {
		t.Fatalf("after a refused pull: %s %v", op.State, stepStates(op))
	}
	h.running("op-rs") // offered again
	if op := h.op("op-rs"); op.Current().Name != "copy-base-to-target" || op.Current().Attempt != 1 {
		t.Fatalf("pull again: %v", stepStates(op))
	}
	h.finishAll("op-rs")
	if h.status("i") != lifecycle.StatusVerifyResize {
		t.Fatalf("%s", h.status("i"))
	}
}

func TestResizeInPlaceAndRevert(t *testing.T) {
	h := newResizeHarness(t)
	if r := h.resize("op-rs", "", large, time.Hour); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := stepStates(h.op("op-rs")); !slices.Equal(got, []string{"preflight:pending", "stop-domain:pending", "reshape-domain:pending", "start-domain:pending"}) {
		t.Fatalf("plan: %v", got)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 2 || a["h2"].VCPUs != 0 {
		t.Fatalf("room resizing in place: %+v", a)
	}
	h.stepHosts("op-rs", []string{"h1", "h1", "h1", "h1"}, nil)
	i := h.inst()
	if i.Status() != lifecycle.StatusVerifyResize || i.Spec != large || i.Resize.ConfirmBy.IsZero() {
		t.Fatalf("after: %s %+v", i.Status(), i.Resize)
	}
	h.act("op-rv", lifecycle.ActionRevertResize)
	h.stepHosts("op-rv", []string{"h1", "h1", "h1"}, nil) // stop, unshape, start
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.Spec != small || i.Resize != nil {
		t.Fatalf("reverted: %s %+v", i.Status(), i)
	}
}

func TestResizeOfAStoppedInstanceStaysOff(t *testing.T) {
	h := newResizeHarness(t)
	h.act("op-s", lifecycle.ActionStop)
	h.finishAll("op-s")
	h.resize("op-rs", "h2", large, 0)
	if got := stepStates(h.op("op-rs")); len(got) != 5 {
		t.Fatalf("plan: %v", got)
	}
	h.finishAll("op-rs")
	if i := h.inst(); i.Status() != lifecycle.StatusVerifyResize || i.HostID != "h2" || h.word(vocabulary.ManageInstance) != "offline" {
		t.Fatalf("%s on %s: %s", i.Status(), i.HostID, h.word(vocabulary.ManageInstance))
	}
}

func TestDeleteOfAnUnconfirmedResizeRemovesTheOriginal(t *testing.T) {
	h := newResizeHarness(t)
	h.resize("op-rs", "h2", large, 0)
	h.finishAll("op-rs")
	h.act("op-d", lifecycle.ActionDelete)
	h.stepHosts("op-d", []string{"h2", "h1"}, nil)
	if i := h.inst(); i.Status() != lifecycle.StatusDeleted || i.Resize != nil {
		t.Fatalf("%s %+v", i.Status(), i.Resize)
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 0 || a["h2"].VCPUs != 0 {
		t.Fatalf("room after the delete: %+v", a)
	}
}

func TestExtend(t *testing.T) {
	h := newResizeHarness(t)
	grown := small
	grown.DiskGiB = 5
	ext := func(id string, to state.Spec) Result {
		return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionExtend, Operation: state.Operation{
			ID: id, InstanceID: "i", Deadline: h.now.Add(time.Hour), Resize: &state.Resize{To: to}}})
	}
	if r := ext("op-e", grown); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.status("i") != lifecycle.StatusExtending || h.word(vocabulary.ManagedInstance) != "EXTENDING" {
		t.Fatalf("%s", h.status("i"))
	}
	h.finishAll("op-e")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.Spec != grown || i.Resize != nil {
		t.Fatalf("extended: %s %+v", i.Status(), i.Spec)
	}
	more := grown
	more.DiskGiB = 9
	ext("op-e2", more)
	h.mustReport(Finish{OperationID: "op-e2", Fault: fault("INVALID_SPEC")})
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.Spec != grown || h.word(vocabulary.ManagedInstance) != "EXTENDEDFAILED" {
		t.Fatalf("failed extend: %s %+v %s", i.Status(), i.Spec, h.word(vocabulary.ManagedInstance))
	}
}

// TestReshapingRefusesBadInput: each refused request leaves no operation
// and the instance as it was.
func TestReshapingRefusesBadInput(t *testing.T) {
	h := newResizeHarness(t)
	h.register("tiny", 1, 256)
	before := h.inst()
	smallerDisk := large
	smallerDisk.DiskGiB = 1
	h.resize("op-x", "", large, 0)
	h.finishAll("op-x")
	h.act("op-c", lifecycle.ActionConfirmResize)
	h.finishAll("op-c")
	before = h.inst()
	bigger := large
	bigger.VCPUs = 3
	otherImage := bigger
	otherImage.Image = "other"
	cases := []struct {
		name string
		r    func() Result
		want error
	}{ // case n proposes operation op-<n+1>
		{"smaller disk", func() Result { return h.resize("op-1", "", smallerDisk, 0) }, ErrInvalid},
		{"same shape", func() Result { return h.resize("op-2", "", large, 0) }, ErrInvalid},
		{"other image", func() Result { return h.resize("op-3", "", otherImage, 0) }, ErrInvalid},
		{"no room there", func() Result { return h.resize("op-4", "tiny", bigger, 0) }, ErrNoCapacity},
		{"no room in place", func() Result {
			huge := bigger
			huge.VCPUs = 64
			return h.resize("op-5", "", huge, 0)
		}, ErrNoCapacity},
		{"unknown host", func() Result { return h.resize("op-6", "nope", bigger, 0) }, ErrHostUnavailable},
		{"confirm with nothing to confirm", func() Result { return h.act("op-7", lifecycle.ActionConfirmResize) }, lifecycle.ErrNotAllowed},
		{"revert with nothing to revert", func() Result { return h.act("op-8", lifecycle.ActionRevertResize) }, lifecycle.ErrNotAllowed},
		{"extend changing vCPUs", func() Result {
			return h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionExtend, Operation: state.Operation{
				ID: "op-9", InstanceID: "i", Resize: &state.Resize{To: state.Spec{VCPUs: 4, MemoryMiB: 1024, DiskGiB: 9, Image: "img"}}}})
		}, ErrInvalid},
		{"resize without a shape", func() Result { return h.act("op-10", lifecycle.ActionResize) }, ErrInvalid},
		{"move without a target", func() Result { return h.act("op-11", lifecycle.ActionMove) }, ErrInvalid},
	}
	for n, c := range cases {
		if r := c.r(); !errors.Is(r.Err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, r.Err, c.want)
		}
		if _, err := h.store.Operation(fmt.Sprintf("op-%d", n+1)); err == nil {
			t.Errorf("%s: an operation was recorded", c.name)
		}
		if after := h.inst(); after.Status() != before.Status() || after.Spec != before.Spec || after.CurrentOp != "" || after.ModifyRev != before.ModifyRev {
			t.Errorf("%s: instance changed: %+v", c.name, after)
		}
	}
}

func TestMoveOneInstance(t *testing.T) {
	h := newResizeHarness(t)
	if r := h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionMove, Operation: state.Operation{
		ID: "op-mv", InstanceID: "i", Deadline: h.now.Add(time.Hour), TargetHostID: "h2", Token: "t0k3n"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.status("i") != lifecycle.StatusMoving {
		t.Fatal(h.status("i"))
	}
	h.finishAll("op-mv")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.HostID != "h2" {
		t.Fatalf("%s on %s", i.Status(), i.HostID)
	}
}
