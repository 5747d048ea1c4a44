package convert

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// An operation shows its copy progress only while the step attempt that
// reported it runs.
func TestOperationShowsTheRunningCopyOnly(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	op := &state.Operation{ID: "op-7", State: state.OpRunning, Cur: 1,
		Steps: []state.Step{{Name: "offer-disk", State: state.StepSucceeded, Attempt: 1}, {Name: "copy-disk-to-target", State: state.StepRunning, Attempt: 2}}}
	op.Copy = &state.CopyProgress{StepID: op.StepID(1, 2), BytesDone: 412 << 20, BytesTotal: 2 << 30, BytesPerSecond: 180 << 20, BytesSent: 300 << 20, ReportTime: at}
	c := OperationToPB(op).GetCopy()
	if c == nil || c.GetStepId() != "op-7/1/2" || c.GetBytesDone() != 412<<20 || c.GetBytesTotal() != 2<<30 ||
		c.GetBytesPerSecond() != 180<<20 || c.GetBytesSent() != 300<<20 || !c.GetReportTime().AsTime().Equal(at) {
		t.Fatalf("copy = %v", c)
	}
	op.Steps[1].Attempt = 3 // a later attempt has not reported yet
	if c := OperationToPB(op).GetCopy(); c != nil {
		t.Fatalf("copy of an earlier attempt shown: %v", c)
	}
	op.Steps[1].Attempt, op.Steps[1].State = 2, state.StepSucceeded
	if c := OperationToPB(op).GetCopy(); c != nil {
		t.Fatalf("copy of a finished step shown: %v", c)
	}
}

// An instance shows the copy progress of its current operation only.
func TestInstanceShowsItsCurrentOperationsCopy(t *testing.T) {
	i := &state.Instance{ID: "i-1", CurrentOp: "op-7", Copy: &state.CopyProgress{StepID: "op-7/2/1", BytesDone: 1, BytesTotal: 2}}
	if c := InstanceToPB(i).GetCopy(); c == nil || c.GetStepId() != "op-7/2/1" {
		t.Fatalf("copy = %v", c)
	}
	i.CurrentOp = "op-70" // not a prefix match
	if c := InstanceToPB(i).GetCopy(); c != nil {
		t.Fatalf("copy of another operation shown: %v", c)
	}
}
