package fsm

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func (h *harness) op(id string) state.Operation {
	h.t.Helper()
	op, err := h.store.Operation(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return op
}

// running reports the operation's current step as succeeded.
func (h *harness) running(id string) {
	h.t.Helper()
	h.mustReport(Finish{OperationID: id, Succeeded: true})
}

// finishAll reports every step left of the operation as succeeded, as its
// host would run them (a create or start checks the host first).
func (h *harness) finishAll(id string) {
	h.t.Helper()
	for op := h.op(id); !op.State.Done() && op.Cur < len(op.Steps); op = h.op(id) {
		h.running(id)
	}
}

// preflighted reports the preflight step of operation id as passed, so
// that what follows acts on the step after it.
func (h *harness) preflighted(id string) {
	h.t.Helper()
	if op := h.op(id); op.Cur >= len(op.Steps) || op.Steps[op.Cur].Action != lifecycle.ActPreflight {
		h.t.Fatalf("operation %s is not at its preflight: %+v", id, h.op(id))
	}
	h.mustReport(Finish{OperationID: id, Succeeded: true})
}

func fault(code string) *state.Fault { return &state.Fault{Code: code, Message: code} }

func stepStates(op state.Operation) (out []string) {
	for _, s := range op.Steps {
		out = append(out, s.Name+":"+string(s.State))
	}
	return out
}

func TestTransientFaultIsRetriedUnderANewStepID(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.mustReport(Finish{OperationID: "op-i", Fault: fault("HYPERVISOR_UNAVAILABLE")})
	op := h.op("op-i")
	st := op.Steps[0]
	if op.State != state.OpRunning || st.State != state.StepRetryWait || st.Attempt != 1 || !st.RetryTime.After(h.now) || st.Fault.Code != "HYPERVISOR_UNAVAILABLE" {
		t.Fatalf("after a transient fault: %+v / %+v", op, st)
	}
	if h.status("i") != lifecycle.StatusCreating {
		t.Fatalf("status while waiting to retry: %s", h.status("i"))
	}
	// The first attempt's id is spent: a late duplicate of it changes nothing.
	if r := h.apply(TypeFinish, Finish{OperationID: "op-i", StepID: "op-i/0/1", Succeeded: true, HostID: "h1"}); !errors.Is(r.Err, ErrStaleStep) {
		t.Fatalf("late result of attempt 1: %v", r.Err)
	}
	h.mustReport(Finish{OperationID: "op-i", Fault: fault("HYPERVISOR_UNAVAILABLE")})
	if op := h.op("op-i"); op.Steps[0].Attempt != 2 || op.Steps[0].State != state.StepRetryWait {
		t.Fatalf("after attempt 2: %+v", op.Steps[0])
	}
	h.finishAll("op-i")
	op = h.op("op-i")
	if op.State != state.OpSucceeded || op.Steps[0].Attempt != 3 || h.status("i") != lifecycle.StatusRunning {
		t.Fatalf("after attempt 3: %+v, %s", op, h.status("i"))
	}
}

func TestRetriesRunOut(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	for a := 1; a <= lifecycle.MaxAttempts; a++ {
		h.mustReport(Finish{OperationID: "op-i", Fault: fault("HYPERVISOR_UNAVAILABLE")})
	}
	op := h.op("op-i")
	if op.State != state.OpFailed || op.Steps[0].State != state.StepFailed || op.Fault.Code != "HYPERVISOR_UNAVAILABLE" || h.status("i") != lifecycle.StatusError {
		t.Fatalf("after %d transient faults: %+v, %s", lifecycle.MaxAttempts, op, h.status("i"))
	}
}

func TestPermanentFaultIsNotRetried(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.mustReport(Finish{OperationID: "op-i", Fault: fault("IMAGE_NOT_FOUND")})
	if op := h.op("op-i"); op.State != state.OpFailed || op.Steps[0].Attempt != 1 {
		t.Fatalf("%+v", op)
	}
}

func TestOnlyTheStepsHostReports(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	if r := h.report(Finish{OperationID: "op-i", Succeeded: true, HostID: "h2"}); !errors.Is(r.Err, ErrWrongHost) {
		t.Fatalf("h2 reporting h1's step: %v", r.Err)
	}
	if op := h.op("op-i"); op.State != state.OpRunning {
		t.Fatalf("changed by a foreign report: %+v", op)
	}
}

func TestCancelRunningCreateRollsBack(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.preflighted("op-i")
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-i", StepID: "op-i/1/1", HostEpoch: 1}}})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-i"})
	op := h.op("op-i")
	if !op.CancelRequested || op.State != state.OpRunning {
		t.Fatalf("cancel while the step runs: %+v", op)
	}
	// The step ends; its undo (delete the domain) runs, then the operation
	// is canceled. The preflight changed nothing: it has no undo.
	h.apply(TypeFinish, Finish{OperationID: "op-i", StepID: "op-i/1/1", Succeeded: true, HostID: "h1"})
	op = h.op("op-i")
	if op.State != state.OpRollingBack || len(op.Steps) != 3 || op.Current().Name != "delete-domain" || op.Current().Action != lifecycle.ActDelete {
		t.Fatalf("rolling back: %+v", stepStates(op))
	}
	h.running("op-i")
	op = h.op("op-i")
	want := []string{"preflight:succeeded", "create-domain:compensated", "delete-domain:succeeded"}
	if op.State != state.OpCanceled || !slices.Equal(stepStates(op), want) {
		t.Fatalf("after the rollback: %s %v", op.State, stepStates(op))
	}
	if h.status("i") != lifecycle.StatusDeleted {
		t.Fatalf("canceled create: %s", h.status("i"))
	}
}

// TestCancelDuringPreflight: a create canceled while its host checks ends
// with nothing to undo, as a tombstone.
func TestCancelDuringPreflight(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-i", StepID: "op-i/0/1", HostEpoch: 1}}})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-i"})
	h.apply(TypeFinish, Finish{OperationID: "op-i", StepID: "op-i/0/1", Succeeded: true, HostID: "h1"})
	op := h.op("op-i")
	if want := []string{"preflight:succeeded", "create-domain:skipped"}; op.State != state.OpCanceled || !slices.Equal(stepStates(op), want) {
		t.Fatalf("canceled during the preflight: %s %v", op.State, stepStates(op))
	}
	if h.status("i") != lifecycle.StatusDeleted {
		t.Fatalf("canceled create: %s", h.status("i"))
	}
}

// TestPreflightFailureFailsFast: a host that cannot take the instance says
// so in its preflight; the fault is permanent (no retry), nothing else runs,
// and the operation and the instance carry the fault.
func TestPreflightFailureFailsFast(t *testing.T) {
	for _, kind := range []lifecycle.OpKind{lifecycle.OpCreate, lifecycle.OpStart, lifecycle.OpHardRestart} {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarness(t)
			h.register("h1", 4, 4096)
			h.create("i", "h1", 1, 512, "")
			opID := "op-i"
			if kind != lifecycle.OpCreate {
				h.finishAll("op-i")
				h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-stop", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
				h.finishAll("op-stop")
				a := lifecycle.ActionStart
				if kind == lifecycle.OpHardRestart {
					a = lifecycle.ActionRestart
				}
				opID = "op-boot"
				h.mustApply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
			}
			if op := h.op(opID); op.Kind != kind {
				t.Fatalf("operation kind %s, want %s", op.Kind, kind)
			}
			f := &state.Fault{Code: "INSUFFICIENT_DISK", Message: "/d has 1 bytes free, needs 2"}
			h.mustReport(Finish{OperationID: opID, Fault: f})
			op := h.op(opID)
			if op.State != state.OpFailed || op.Steps[0].Attempt != 1 || op.Fault.Code != "INSUFFICIENT_DISK" {
				t.Fatalf("after a failed preflight: %s %v %+v", op.State, stepStates(op), op.Fault)
			}
			if op.Steps[1].State != state.StepSkipped || len(op.Steps) != 2 {
				t.Fatalf("steps after a failed preflight: %v", stepStates(op))
			}
			i, _ := h.store.Instance("i")
			if i.Status() != lifecycle.StatusError || i.Fault == nil || i.Fault.Code != "INSUFFICIENT_DISK" {
				t.Fatalf("instance after a failed preflight: %s %+v", i.Status(), i.Fault)
			}
		})
	}
}

// TestRestartOfAStoppedInstanceBoots: the restart of a stopped instance is
// a hard restart whose plan checks the host and boots the domain, and a
// cancel while it boots stops it again: STOPPED, as it was.
func TestRestartOfAStoppedInstanceBoots(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-stop", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.finishAll("op-stop")
	restart := func(id string) {
		h.t.Helper()
		h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionRestart, Operation: state.Operation{ID: id, InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	}
	restart("op-r1")
	op := h.op("op-r1")
	if op.Kind != lifecycle.OpHardRestart || h.status("i") != lifecycle.StatusHardRebooting {
		t.Fatalf("restart of a stopped instance: %s, status %s", op.Kind, h.status("i"))
	}
	if want := []string{"preflight:pending", "boot-domain:pending"}; !slices.Equal(stepStates(op), want) {
		t.Fatalf("plan %v, want %v", stepStates(op), want)
	}
	h.preflighted("op-r1")
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-r1", StepID: "op-r1/1/1", HostEpoch: 1}}})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-r1"})
	h.apply(TypeFinish, Finish{OperationID: "op-r1", StepID: "op-r1/1/1", Succeeded: true, HostID: "h1"})
	h.finishAll("op-r1") // the forced stop that undoes the boot
	op = h.op("op-r1")
	i, _ := h.store.Instance("i")
	if op.State != state.OpCanceled || i.Status() != lifecycle.StatusStopped || i.Desired != lifecycle.DesiredStopped {
		t.Fatalf("canceled restart: %s %v, instance %s desired %s", op.State, stepStates(op), i.Status(), i.Desired)
	}

	restart("op-r2")
	h.finishAll("op-r2")
	i, _ = h.store.Instance("i")
	if i.Status() != lifecycle.StatusRunning || i.Desired != lifecycle.DesiredRunning {
		t.Fatalf("after the restart: %s desired %s", i.Status(), i.Desired)
	}
	// Running, a hard restart is a reset again: one step, no way back.
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionRestart, Hard: true, Operation: state.Operation{ID: "op-r3", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	if want := []string{"reset-domain:pending"}; !slices.Equal(stepStates(h.op("op-r3")), want) {
		t.Fatalf("hard restart of a running instance: %v, want %v", stepStates(h.op("op-r3")), want)
	}
}

func TestCancelRunningStopStartsItAgain(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-s", StepID: "op-s/0/1", HostEpoch: 1}}})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-s"})
	h.apply(TypeFinish, Finish{OperationID: "op-s", StepID: "op-s/0/1", Succeeded: true, HostID: "h1"})
	if h.status("i") != lifecycle.StatusStopping {
		t.Fatalf("during the rollback: %s", h.status("i"))
	}
	h.running("op-s")
	op := h.op("op-s")
	i, _ := h.store.Instance("i")
	if op.State != state.OpCanceled || i.Desired != lifecycle.DesiredRunning || i.Status() != lifecycle.StatusRunning {
		t.Fatalf("canceled stop: %s, instance %s desired %s", op.State, i.Status(), i.Desired)
	}
}

func TestIrreversibleStepsAreNotCancellable(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, Operation: state.Operation{ID: "op-d", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-d", StepID: "op-d/0/1", HostEpoch: 1}}})
	if Cancellable(ptr(h.op("op-d"))) {
		t.Fatal("a running delete says it is cancellable")
	}
	if r := h.apply(TypeCancel, Cancel{OperationID: "op-d"}); !errors.Is(r.Err, ErrNotCancellable) {
		t.Fatalf("cancel of a running delete: %v", r.Err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCancelWhileWaitingToRetry(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.mustReport(Finish{OperationID: "op-i", Fault: fault("HYPERVISOR_UNAVAILABLE")})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-i"})
	op := h.op("op-i")
	if op.State != state.OpCanceled || op.Steps[0].State != state.StepSkipped || h.status("i") != lifecycle.StatusDeleted {
		t.Fatalf("%s %v %s", op.State, stepStates(op), h.status("i"))
	}
}

func TestAbortEndsTheWholeOperation(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-i", StepID: "op-i/0/1", HostEpoch: 1}}})
	h.mustApply(TypeFinish, Finish{OperationID: "op-i", Abort: true, Fault: fault("DEADLINE_EXCEEDED")})
	op := h.op("op-i")
	if op.State != state.OpFailed || op.Fault.Code != "DEADLINE_EXCEEDED" || op.Steps[0].State != state.StepFailed || h.status("i") != lifecycle.StatusError {
		t.Fatalf("%+v %s", op, h.status("i"))
	}
}

// newMoveHarness has instance i running on h1 and moving to h2 (op-mv).
func newMoveHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.drainMove("i")
	return h
}

// drainMove drains h1 moving instance id to h2.
func (h *harness) drainMove(id string) {
	h.t.Helper()
	h.mustApply(TypeDrainHost, DrainHost{HostID: "h1", Policy: scheduler.Policy{},
		Moves: []state.Operation{{ID: "op-mv", InstanceID: id, TargetHostID: "h2", Token: "t0k3n", Deadline: h.now.Add(time.Hour)}}})
}

func TestMoveRunsEveryStepAndSwitchesHost(t *testing.T) {
	h := newMoveHarness(t)
	op := h.op("op-mv")
	if op.Kind != lifecycle.OpMove || op.TargetHostID != "h2" || h.status("i") != lifecycle.StatusMoving || len(op.Steps) != 6 {
		t.Fatalf("move: %+v %s", stepStates(op), h.status("i"))
	}
	hosts := []string{"h1", "h1", "h2", "h2", "h1"} // switch-host runs on the coordinator
	for n, host := range hosts {
		op = h.op("op-mv")
		if got := op.StepHost(op.Current()); got != host {
			t.Fatalf("step %d (%s) on %q, want %q", n, op.Current().Name, got, host)
		}
		// Before the switch, the target's reports about the moving instance
		// are neither its state nor an orphan.
		if op.Current().Name != "remove-from-source" {
			h.mustApply(TypeObserve, Observe{HostID: "h2", Epoch: 1, Full: true, Observations: []Observation{{InstanceID: "i", Power: lifecycle.PowerShutOff, Time: h.now}}})
			if host, _ := h.store.Host("h2"); len(host.Orphans) != 0 {
				t.Fatalf("h2 orphans during the move: %v", host.Orphans)
			}
			if h.status("i") != lifecycle.StatusMoving {
				t.Fatalf("status during the move: %s", h.status("i"))
			}
		}
		h.running("op-mv")
	}
	op = h.op("op-mv")
	i, _ := h.store.Instance("i")
	if op.State != state.OpSucceeded || i.HostID != "h2" || i.Status() != lifecycle.StatusRunning {
		t.Fatalf("after the move: %s %v, instance on %s %s", op.State, stepStates(op), i.HostID, i.Status())
	}
	if a := h.store.Allocated(); a["h1"].VCPUs != 0 || a["h2"].VCPUs != 1 || i.MoveTarget != "" {
		t.Fatalf("room after the move: %+v", a)
	}
}

func TestMoveFailureRollsBackToTheSource(t *testing.T) {
	h := newMoveHarness(t)
	h.running("op-mv") // stop-on-source
	h.running("op-mv") // offer-disk
	h.mustReport(Finish{OperationID: "op-mv", Fault: fault("INVALID_DISK")})
	op := h.op("op-mv")
	if op.State != state.OpRollingBack || op.Current().Name != "start-on-source" || op.StepHost(op.Current()) != "h1" {
		t.Fatalf("rolling back: %s %v", op.State, stepStates(op))
	}
	h.running("op-mv")
	op = h.op("op-mv")
	i, _ := h.store.Instance("i")
	want := []string{"stop-on-source:compensated", "offer-disk:succeeded", "copy-disk-to-target:failed",
		"start-on-target:skipped", "switch-host:skipped", "remove-from-source:skipped", "start-on-source:succeeded"}
	if op.State != state.OpFailed || !slices.Equal(stepStates(op), want) || op.Fault.Code != "INVALID_DISK" {
		t.Fatalf("after the rollback: %s %v", op.State, stepStates(op))
	}
	if i.HostID != "h1" || i.Status() != lifecycle.StatusRunning || i.Result != lifecycle.ResultRolledBack || i.Fault == nil {
		t.Fatalf("instance after a rolled-back move: host %s %s %+v", i.HostID, i.Status(), i)
	}
}

func TestMoveFailureAfterTheSwitchGoesNoFurtherBack(t *testing.T) {
	h := newMoveHarness(t)
	for range 4 { // up to and including start-on-target; the switch follows at once
		h.running("op-mv")
	}
	if Cancellable(ptr(h.op("op-mv"))) {
		t.Fatal("cancellable after the switch")
	}
	h.mustReport(Finish{OperationID: "op-mv", Fault: fault("HYPERVISOR_ERROR")})
	op := h.op("op-mv")
	i, _ := h.store.Instance("i")
	if op.State != state.OpFailed || len(op.Steps) != 6 || i.HostID != "h2" {
		t.Fatalf("%s %v on %s", op.State, stepStates(op), i.HostID)
	}
}

func TestDrainMoveFallsBackToStopWithoutRoom(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 1, 256) // too small
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.drainMove("i")
	if op := h.op("op-mv"); op.Kind != lifecycle.OpStop {
		t.Fatalf("kind %s", op.Kind)
	}
}

func TestUndoStepsRetryAfterACancel(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-s", StepID: "op-s/0/1", HostEpoch: 1}}})
	h.mustApply(TypeCancel, Cancel{OperationID: "op-s"})
	h.mustApply(TypeFinish, Finish{OperationID: "op-s", StepID: "op-s/0/1", Succeeded: true, HostID: "h1"})
	h.mustReport(Finish{OperationID: "op-s", Fault: fault("HYPERVISOR_UNAVAILABLE")})
	if op := h.op("op-s"); op.State != state.OpRollingBack || op.Current().State != state.StepRetryWait {
		t.Fatalf("undo after a transient fault: %s %v", op.State, stepStates(op))
	}
	// A late duplicate of the step the rollback started from changes nothing.
	if r := h.apply(TypeFinish, Finish{OperationID: "op-s", StepID: "op-s/0/1", Succeeded: true, HostID: "h1"}); !errors.Is(r.Err, ErrStaleStep) {
		t.Fatalf("stale result during the rollback: %v", r.Err)
	}
	h.running("op-s")
	if op := h.op("op-s"); op.State != state.OpCanceled || h.status("i") != lifecycle.StatusRunning {
		t.Fatalf("after the retried undo: %s %s", op.State, h.status("i"))
	}
}

func TestMoveDeadlineRollsBack(t *testing.T) {
	h := newMoveHarness(t)
	h.running("op-mv") // stop-on-source
	h.running("op-mv") // offer-disk
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-mv", StepID: "op-mv/2/1", HostEpoch: 1}}})
	h.mustApply(TypeFinish, Finish{OperationID: "op-mv", Abort: true, Fault: fault("DEADLINE_EXCEEDED")})
	op := h.op("op-mv")
	// The copy may have left part of the disk on h2: removed first.
	if op.State != state.OpRollingBack || op.Current().Name != "remove-from-target" || op.StepHost(op.Current()) != "h2" ||
		op.Deadline.Before(h.now.Add(rollbackBudget)) {
		t.Fatalf("a move past its deadline: %s %v, deadline %v", op.State, stepStates(op), op.Deadline)
	}
	h.running("op-mv")
	if op := h.op("op-mv"); op.Current().Name != "start-on-source" {
		t.Fatalf("after the target's cleanup: %v", stepStates(op))
	}
	h.running("op-mv")
	i, _ := h.store.Instance("i")
	if op := h.op("op-mv"); op.State != state.OpFailed || op.Fault.Code != "DEADLINE_EXCEEDED" || i.Status() != lifecycle.StatusRunning || i.HostID != "h1" || i.MoveTarget != "" {
		t.Fatalf("after the rollback: %s, instance %s on %s", op.State, i.Status(), i.HostID)
	}
}

func TestMoveStepsOnlyFromTheirHost(t *testing.T) {
	h := newMoveHarness(t)
	h.running("op-mv")
	h.running("op-mv")
	// The import runs on h2: the source may not report it.
	if r := h.report(Finish{OperationID: "op-mv", Succeeded: true, HostID: "h1"}); !errors.Is(r.Err, ErrWrongHost) {
		t.Fatalf("h1 reporting h2's import: %v", r.Err)
	}
}

func TestMoveTokenIsNotKept(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 1, 128) // too small: the move falls back to a stop
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.drainMove("i")
	if op := h.op("op-mv"); op.Kind != lifecycle.OpStop || op.Token != "" || op.TargetHostID != "" {
		t.Fatalf("fallback stop carries the move's hand-over: %+v", op)
	}
	h2 := newHarness(t)
	h2.register("h1", 4, 4096)
	h2.register("h2", 4, 4096)
	h2.create("i", "h1", 1, 512, "")
	h2.finishAll("op-i")
	h2.drainMove("i")
	if op := h2.op("op-mv"); op.Token == "" {
		t.Fatal("a running move lost its token")
	}
	for range 6 {
		if op := h2.op("op-mv"); op.State.Done() {
			break
		}
		h2.running("op-mv")
	}
	if op := h2.op("op-mv"); op.State != state.OpSucceeded || op.Token != "" {
		t.Fatalf("finished move keeps its token: %s %q", op.State, op.Token)
	}
}

func TestFailedMoveOfAStoppedInstanceLeavesItAsItWas(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.running("op-s")
	h.drainMove("i")
	h.running("op-mv") // offer-disk
	h.mustReport(Finish{OperationID: "op-mv", Fault: fault("INVALID_DISK")})
	i, _ := h.store.Instance("i")
	if op := h.op("op-mv"); op.State != state.OpFailed || i.Status() != lifecycle.StatusStopped || i.Result != lifecycle.ResultRolledBack || i.HostID != "h1" {
		t.Fatalf("%s: instance %s %s on %s", op.State, i.Status(), i.Result, i.HostID)
	}
}

func TestMoveFailingAfterTheSwitchLeavesTheInstanceRunning(t *testing.T) {
	h := newMoveHarness(t)
	for range 4 {
		h.running("op-mv")
	}
	h.mustReport(Finish{OperationID: "op-mv", Fault: fault("HYPERVISOR_ERROR")})
	i, _ := h.store.Instance("i")
	if op := h.op("op-mv"); op.State != state.OpFailed || i.Status() != lifecycle.StatusRunning || i.HostID != "h2" || i.Fault == nil {
		t.Fatalf("%s: instance %s on %s, fault %v", op.State, i.Status(), i.HostID, i.Fault)
	}
}

func TestSwitchRefusesATargetThatWentAway(t *testing.T) {
	h := newMoveHarness(t)
	for range 3 { // up to copy-disk-to-target
		h.running("op-mv")
	}
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-mv", StepID: "op-mv/3/1", HostEpoch: 1}}})
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h2", Epoch: 1})
	h.mustApply(TypeFinish, Finish{OperationID: "op-mv", StepID: "op-mv/3/1", Succeeded: true, HostID: "h2"})
	op := h.op("op-mv")
	i, _ := h.store.Instance("i")
	if op.State != state.OpRollingBack || i.HostID != "h1" || op.Fault.Code != "TARGET_UNAVAILABLE" {
		t.Fatalf("switch to a disconnected target: %s %v, instance on %s", op.State, stepStates(op), i.HostID)
	}
}

func TestPendingEvictionIsNotCancellable(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.createWith("v", "h1", 1, state.Placement{Preemptible: true}, scheduler.Policy{})
	h.finishAll("op-v")
	h.mustApply(TypePreempt, Preempt{For: "x", Victims: []state.Operation{{ID: "op-evict", InstanceID: "v", Deadline: h.now.Add(time.Minute)}}})
	if r := h.apply(TypeCancel, Cancel{OperationID: "op-evict"}); !errors.Is(r.Err, ErrNotCancellable) {
		t.Fatalf("cancel of a pending eviction: %v", r.Err)
	}
}

func TestMoveHoldsRoomOnItsTarget(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.register("h2", 1, 4096) // room for one
	h.create("a", "h1", 1, 512, "")
	h.create("b", "h1", 1, 512, "")
	h.finishAll("op-a")
	h.finishAll("op-b")
	// Both moves decided against the same free room: the second is checked
	// against the first at commit time and falls back to a stop.
	h.mustApply(TypeDrainHost, DrainHost{HostID: "h1", Moves: []state.Operation{
		{ID: "op-mv-a", InstanceID: "a", TargetHostID: "h2", Token: "t1", Deadline: h.now.Add(time.Hour)},
		{ID: "op-mv-b", InstanceID: "b", TargetHostID: "h2", Token: "t2", Deadline: h.now.Add(time.Hour)}}})
	if a, b := h.op("op-mv-a"), h.op("op-mv-b"); a.Kind != lifecycle.OpMove || b.Kind != lifecycle.OpStop {
		t.Fatalf("two moves into room for one: %s, %s", a.Kind, b.Kind)
	}
	// While a moves, its room on h2 is taken: a new instance does not fit there.
	if r := h.create("c", "h2", 1, 512, ""); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("create on a move's target: %v", r.Err)
	}
	if got := h.store.Allocated()["h2"].VCPUs; got != 1 {
		t.Fatalf("h2 allocated %d vCPUs during the move", got)
	}
	// A rolled-back move gives the room back.
	h.running("op-mv-a") // stop-on-source
	h.mustReport(Finish{OperationID: "op-mv-a", Fault: fault("INVALID_STEP")})
	h.running("op-mv-a") // start-on-source
	if got := h.store.Allocated()["h2"].VCPUs; got != 0 || h.op("op-mv-a").State != state.OpFailed {
		t.Fatalf("h2 allocated %d vCPUs after the move failed", got)
	}
	if r := h.create("c", "h2", 1, 512, ""); r.Err != nil {
		t.Fatalf("create after the move gave the room back: %v", r.Err)
	}
}

func TestMoveStepsHaveTheirOwnDeadlines(t *testing.T) {
	h := newMoveHarness(t)
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-mv", StepID: "op-mv/0/1", HostEpoch: 1}}})
	op := h.op("op-mv")
	if st := op.Steps[0]; !st.Deadline.Equal(h.now.Add(3*time.Minute)) || !st.Deadline.Before(op.Deadline) {
		t.Fatalf("stop-on-source deadline %v (now %v), the move's %v", st.Deadline, h.now, op.Deadline)
	}
	// A step past its own deadline fails and the move rolls back, long before the move's deadline.
	h.mustApply(TypeFinish, Finish{OperationID: "op-mv", StepID: "op-mv/0/1", HostID: "h1", Fault: fault("DEADLINE_EXCEEDED")})
	if op := h.op("op-mv"); op.State != state.OpFailed || h.status("i") != lifecycle.StatusError {
		t.Fatalf("after stop-on-source timed out: %s %v, %s", op.State, stepStates(op), h.status("i"))
	}
}

// Every operation gets its own copy of its plan: a change to one of its
// steps (or a stop's grace, added to its timeout) reaches neither the plan
// nor other operations.
func TestPlannedStepsAreEachOperationsOwn(t *testing.T) {
	graceful := state.Operation{Kind: lifecycle.OpMove, Graceful: time.Minute}
	plain := state.Operation{Kind: lifecycle.OpMove}
	other := state.Operation{Kind: lifecycle.OpMove}
	planSteps(&graceful, true)
	planSteps(&plain, true)
	planSteps(&other, true)
	if &plain.Steps[0] == &other.Steps[0] || plain.Steps[0].Undo == other.Steps[0].Undo {
		t.Fatal("two operations of one kind share their steps")
	}
	plain.Steps[0].State = state.StepSucceeded
	plain.Steps[0].Undo.Name = "changed"
	graceful.Steps[0].State = state.StepSucceeded
	again := state.Operation{Kind: lifecycle.OpMove}
	planSteps(&again, true)
	if again.Steps[0].State != state.StepPending || other.Steps[0].State != state.StepPending {
		t.Fatalf("a step's state leaked to other operations: %v, %v", again.Steps[0].State, other.Steps[0].State)
	}
	if got, want := graceful.Steps[0].Timeout, again.Steps[0].Timeout+time.Minute; got != want {
		t.Fatalf("stop step of the graceful move: timeout %v, want %v", got, want)
	}
	if again.Steps[0].Timeout != plain.Steps[0].Timeout {
		t.Fatalf("the grace of one move reached the plan: %v then %v", plain.Steps[0].Timeout, again.Steps[0].Timeout)
	}
	if again.Steps[0].Undo == nil || again.Steps[0].Undo.Name != "start-on-source" || !again.Steps[0].Undo.IsUndo {
		t.Fatalf("stop-on-source's undo: %+v", again.Steps[0].Undo)
	}
}

// An operation whose steps are still its plan's is stored with the plan's
// array; one whose steps differ in anything (a step begun, a stop's
// grace, an undo changed) keeps its own.
func TestUntouchedStepsAreInterned(t *testing.T) {
	for name, c := range map[string]struct {
		change func(*state.Operation)
		intern bool
	}{
		"untouched":     {func(*state.Operation) {}, true},
		"step begun":    {func(o *state.Operation) { o.Steps[0].State = state.StepRunning }, false},
		"later step":    {func(o *state.Operation) { o.Steps[1].Attempt = 1 }, false},
		"undo changed":  {func(o *state.Operation) { o.Steps[0].Undo.MaxAttempts = 1 }, false},
		"fault":         {func(o *state.Operation) { o.Steps[1].Fault = &state.Fault{Code: "X"} }, false},
		"step appended": {func(o *state.Operation) { o.Steps = append(o.Steps, newStep(lifecycle.StepDef{Name: "x"})) }, false},
		"graceful": {func(o *state.Operation) {
			o.Graceful = time.Minute
			planSteps(o, true)
		}, false},
	} {
		t.Run(name, func(t *testing.T) {
			op := state.Operation{Kind: lifecycle.OpMove}
			planSteps(&op, true)
			c.change(&op)
			shared := internSteps(op.Kind, op.Steps)
			got := shared != nil && slices.ContainsFunc(plansOf(lifecycle.OpMove), func(p []state.Step) bool { return &p[0] == &shared[0] })
			if got != c.intern {
				t.Fatalf("interned: %v, want %v", got, c.intern)
			}
		})
	}
}

// An update shows UPDATING, changes the model only when its step succeeds,
// and a failed one leaves the model and the power state as they were.
func TestUpdateAppliesTheModelOnSuccessOnly(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	update := func(opID string) {
		h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionUpdate, Operation: state.Operation{
			ID: opID, InstanceID: "i", Deadline: h.now.Add(time.Minute),
			Update: &state.ModelUpdate{Name: ptr("renamed"), SetLabels: true, Labels: map[string]string{"team": "db"}},
		}})
	}
	update("op-fail")
	if s := h.status("i"); s != lifecycle.StatusUpdating {
		t.Fatalf("while the update runs: %s", s)
	}
	h.mustReport(Finish{OperationID: "op-fail", Fault: fault("HYPERVISOR_ERROR")})
	inst, _ := h.store.Instance("i")
	if op := h.op("op-fail"); op.State != state.OpFailed || op.Fault == nil || inst.Name != "i" || inst.Labels != nil ||
		h.status("i") != lifecycle.StatusRunning || inst.Result != lifecycle.ResultSucceeded || inst.Fault != nil || inst.LastOp != "op-i" {
		t.Fatalf("after a failed update: %+v, instance %+v, %s", op, inst, h.status("i"))
	}
	update("op-ok")
	h.running("op-ok")
	inst, _ = h.store.Instance("i")
	if inst.Name != "renamed" || inst.Labels["team"] != "db" || h.status("i") != lifecycle.StatusRunning || inst.LastOpK != lifecycle.OpCreate {
		t.Fatalf("after the update: %+v, %s", inst, h.status("i"))
	}
	// An update without a model is refused, and changes nothing.
	r := h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionUpdate, Operation: state.Operation{ID: "op-empty", InstanceID: "i"}})
	if !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("update without a model: %v", r.Err)
	}
}

// An update of an instance in ERROR, failed or succeeded, leaves it in
// ERROR with its fault: a model update says nothing about the guest.
func TestUpdateNeverHidesAnError(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.mustReport(Finish{OperationID: "op-s", Fault: fault("INVALID_STATE")})
	if s := h.status("i"); s != lifecycle.StatusError {
		t.Fatalf("after a failed stop: %s", s)
	}
	for _, ok := range []bool{false, true} {
		id := fmt.Sprintf("op-u-%v", ok)
		h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionUpdate, Operation: state.Operation{
			ID: id, InstanceID: "i", Deadline: h.now.Add(time.Minute), Update: &state.ModelUpdate{SetLabels: true, Labels: map[string]string{"k": "v"}}}})
		if ok {
			h.running(id)
		} else {
			h.mustReport(Finish{OperationID: id, Fault: fault("HYPERVISOR_ERROR")})
		}
		inst, _ := h.store.Instance("i")
		if h.status("i") != lifecycle.StatusError || inst.Fault == nil || inst.Fault.Code != "INVALID_STATE" || inst.LastOpK != lifecycle.OpStop {
			t.Fatalf("update (succeeded=%v) of an instance in ERROR: %s, %+v", ok, h.status("i"), inst)
		}
	}
}
