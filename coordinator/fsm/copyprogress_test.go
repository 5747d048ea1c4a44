package fsm

import (
	"errors"
	"testing"
)

func TestCopyProgressOnlyOfTheRunningCopy(t *testing.T) {
	h := newMoveHarness(t)
	h.running("op-mv") // stop on the source
	h.running("op-mv") // offer
	op := h.op("op-mv")
	importID := op.StepID(op.Cur, op.Current().Attempt+1)
	report := CopyProgress{OperationID: "op-mv", StepID: importID, HostID: "h2", BytesDone: 1 << 20, BytesTotal: 8 << 20, BytesPerSecond: 1 << 20}

	// Not running yet: refused.
	if r := h.apply(TypeCopyProgress, report); !errors.Is(r.Err, ErrStaleStep) {
		t.Fatalf("progress of a step not dispatched = %v, want ErrStaleStep", r.Err)
	}
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-mv", StepID: importID, HostEpoch: 1}}})
	if c := h.op("op-mv"); c.Current().Name != "import-on-target" && c.RunningCopy() != nil {
		t.Fatalf("running step %s has copy progress before any report", c.Current().Name)
	}
	wrongHost := report
	wrongHost.HostID = "h1"
	if r := h.apply(TypeCopyProgress, wrongHost); !errors.Is(r.Err, ErrWrongHost) {
		t.Fatalf("progress from the other host = %v, want ErrWrongHost", r.Err)
	}
	bad := report
	bad.BytesDone = bad.BytesTotal + 1
	if r := h.apply(TypeCopyProgress, bad); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("progress past the total = %v, want ErrInvalid", r.Err)
	}
	h.mustApply(TypeCopyProgress, report)
	after := h.op("op-mv")
	c := after.RunningCopy()
	if c == nil || c.StepID != importID || c.BytesDone != 1<<20 || c.BytesTotal != 8<<20 || c.BytesPerSecond != 1<<20 || !c.ReportTime.Equal(h.now) {
		t.Fatalf("copy progress %+v", c)
	}

	if i, _ := h.store.Instance("i"); i.RunningCopy() == nil || *i.RunningCopy() != *c {
		t.Fatalf("instance copy progress %+v, want the operation's %+v", i.RunningCopy(), c)
	}

	// Once the step is over, the last report is no longer shown, and
	// later reports are refused.
	h.running("op-mv")
	if i, _ := h.store.Instance("i"); i.Copy != nil {
		t.Fatalf("instance copy progress %+v kept after the step ended", i.Copy)
	}
	if done := h.op("op-mv"); done.RunningCopy() != nil {
		t.Fatalf("copy progress %+v shown after the step ended", done.RunningCopy())
	}
	if r := h.apply(TypeCopyProgress, report); !errors.Is(r.Err, ErrStaleStep) {
		t.Fatalf("late progress = %v, want ErrStaleStep", r.Err)
	}
}
