package fsm

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// decommission asks for a stop or delete of instance i with the given
// decommission timeout, as op opID.
func (h *harness) decommission(opID string, a lifecycle.Action, d time.Duration) {
	h.t.Helper()
	h.mustApply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: "i",
		Deadline: h.now.Add(time.Hour), Decommission: d}})
}

// TestDecommissioning: a stop or delete of a running guest first runs its
// decommission work (DECOMMISSIONING); once it is done (or skipped by a
// guest without a guest side) the stop or delete goes on as asked; when it
// fails or runs out of time the instance is stranded in decommissioning,
// the failure stays on the step, and the stop or delete goes on, forced
// and bounded, to STOPPED or DELETED all the same.
func TestDecommissioning(t *testing.T) {
	type outcome struct {
		finish   Finish
		stranded bool
	}
	outcomes := map[string]outcome{
		"done":     {Finish{Succeeded: true}, false},
		"skipped":  {Finish{Succeeded: true, Note: "the guest has no guest side: decommissioning skipped"}, false},
		"failed":   {Finish{Fault: fault("DECOMMISSION_FAILED")}, true},
		"timeout":  {Finish{Fault: fault("DEADLINE_EXCEEDED")}, true},
		"flaky-hv": {Finish{Fault: fault("HYPERVISOR_UNAVAILABLE")}, true}, // one attempt only: the time is the guest's
	}
	for _, a := range []lifecycle.Action{lifecycle.ActionStop, lifecycle.ActionDelete} {
		for name, o := range outcomes {
			t.Run(string(a)+"/"+name, func(t *testing.T) {
				h := newResizeHarness(t)
				h.decommission("op-d", a, 90*time.Second)
				op := h.op("op-d")
				main := "stop-domain"
				end := lifecycle.StatusStopped
				if a == lifecycle.ActionDelete {
					main, end = "delete-domain", lifecycle.StatusDeleted
				}
				if got := stepStates(op); !slices.Equal(got, []string{"decommission:pending", main + ":pending"}) {
					t.Fatalf("plan %v", got)
				}
				if st := op.Steps[0]; st.Action != lifecycle.ActDecommission || st.Timeout != 90*time.Second || st.MaxAttempts != 1 {
					t.Fatalf("decommission step %+v", st)
				}
				if s := h.status("i"); s != lifecycle.StatusDecommissioning || h.word(vocabulary.RightScale) != "decommissioning" {
					t.Fatalf("while decommissioning: %s / %s", s, h.word(vocabulary.RightScale))
				}
				f := o.finish
				f.OperationID = "op-d"
				h.mustReport(f)
				op = h.op("op-d")
				st, next := op.Steps[0], op.Steps[1]
				if o.stranded {
					if st.State != state.StepFailed || st.Fault == nil || st.Fault.Code != f.Fault.Code {
						t.Fatalf("failed decommission recorded as %+v", st)
					}
					if h.status("i") != lifecycle.StatusStrandedDecommissioning || h.word(vocabulary.RightScale) != "stranded in decommissioning" {
						t.Fatalf("after a failed decommission: %s / %s", h.status("i"), h.word(vocabulary.RightScale))
					}
					if !next.Force || next.Timeout != lifecycle.StrandedWithin {
						t.Fatalf("the %s after a failed decommission is not forced and bounded: %+v", main, next)
					}
				} else {
					if st.State != state.StepSucceeded || st.Note != f.Note {
						t.Fatalf("decommission recorded as %+v", st)
					}
					want := lifecycle.StatusStopping
					if a == lifecycle.ActionDelete {
						want = lifecycle.StatusDeleting
					}
					if h.status("i") != want || next.Force || next.Timeout != 0 {
						t.Fatalf("after the decommission: %s, %+v", h.status("i"), next)
					}
				}
				if op.State != state.OpRunning || op.Cur != 1 {
					t.Fatalf("the operation did not go on: %+v", op)
				}
				h.finishAll("op-d")
				op = h.op("op-d")
				if op.State != state.OpSucceeded || h.status("i") != end || h.inst().Decommission != lifecycle.DecomNone {
					t.Fatalf("ended %s, instance %s (%q)", op.State, h.status("i"), h.inst().Decommission)
				}
				if o.stranded && op.Steps[0].Fault == nil {
					t.Fatal("the decommission's failure is gone from the operation")
				}
			})
		}
	}
}

// TestNoDecommissioning: none asked for, an instance whose guest is not
// running, or an operation other than a stop or a delete: no decommission step.
func TestNoDecommissioning(t *testing.T) {
	h := newResizeHarness(t)
	h.decommission("op-s", lifecycle.ActionStop, 0)
	if got := stepStates(h.op("op-s")); !slices.Equal(got, []string{"stop-domain:pending"}) {
		t.Fatalf("stop without decommissioning: %v", got)
	}
	h.finishAll("op-s")
	h.decommission("op-d", lifecycle.ActionDelete, time.Minute)
	if got := stepStates(h.op("op-d")); !slices.Equal(got, []string{"delete-domain:pending"}) {
		t.Fatalf("delete of a stopped instance: %v", got)
	}
	if h.status("i") != lifecycle.StatusDeleting {
		t.Fatalf("status %s", h.status("i"))
	}
}

// TestCancelDuringDecommission: the decommission changes nothing, so a
// stop canceled while it runs leaves the instance running as it was,
// whether the guest's work then succeeds or fails.
func TestCancelDuringDecommission(t *testing.T) {
	for _, end := range []Finish{{Succeeded: true}, {Fault: fault("GUEST_FAILED")}} {
		h := newResizeHarness(t)
		h.decommission("op-d", lifecycle.ActionStop, time.Minute)
		op := h.op("op-d")
		host, _ := h.store.Host("h1")
		h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-d", StepID: op.StepID(0, 1), HostEpoch: host.Epoch}}})
		h.mustApply(TypeCancel, Cancel{OperationID: "op-d"})
		end.OperationID, end.StepID, end.HostID = "op-d", op.StepID(0, 1), "h1"
		h.mustApply(TypeFinish, end)
		i := h.inst()
		if op := h.op("op-d"); op.State != state.OpCanceled || i.Status() != lifecycle.StatusRunning || i.Decommission != lifecycle.DecomNone {
			t.Fatalf("stop canceled while decommissioning, then %+v: %s, instance %s", end, op.State, i.Status())
		}
	}
}
