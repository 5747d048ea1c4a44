package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// TypeCopyProgress records how far a running disk copy step has got.
//
// Progress goes through the log, not a leader-only map: every member then
// answers GetOperation (and feeds WatchInstances) with the same value, a
// new leader keeps showing it, and it is ordered with the step's result, so
// a report arriving after the result is refused rather than shown beside a
// finished step. The cost is bounded: the agent sends at most about one
// report a second per running copy, and they share the agent's batched
// entries with its other reports.
const TypeCopyProgress = "operation.copy_progress"

// CopyProgress is one report of a running copy step from its host.
type CopyProgress struct {
	OperationID    string `json:"operation_id"`
	StepID         string `json:"step_id"`
	HostID         string `json:"host_id"`
	BytesDone      uint64 `json:"bytes_done"`
	BytesTotal     uint64 `json:"bytes_total"`
	BytesPerSecond uint64 `json:"bytes_per_second"`
	BytesSent      uint64 `json:"bytes_sent,omitempty"`
}

func applyCopyProgress(tx *state.Tx, c *CopyProgress) (any, error) {
	op, ok := tx.Operation(c.OperationID)
	if !ok {
		return nil, fmt.Errorf("operation %q: %w", c.OperationID, ErrNotFound)
	}
	if op.State.Done() {
		return nil, fmt.Errorf("operation %q: %w", op.ID, ErrOperationDone)
	}
	st := op.Current()
	if st == nil || st.State != state.StepRunning || c.StepID != op.StepID(op.Cur, st.Attempt) {
		return nil, fmt.Errorf("operation %q, step %q: %w", op.ID, c.StepID, ErrStaleStep)
	}
	if c.HostID != op.StepHost(st) {
		return nil, fmt.Errorf("operation %q step %s runs on %q, not %q: %w", op.ID, st.Name, op.StepHost(st), c.HostID, ErrWrongHost)
	}
	if c.BytesDone > c.BytesTotal {
		return nil, fmt.Errorf("copy progress %d of %d bytes: %w", c.BytesDone, c.BytesTotal, ErrInvalid)
	}
	op.Copy = &state.CopyProgress{
		StepID: c.StepID, BytesDone: c.BytesDone, BytesTotal: c.BytesTotal,
		BytesPerSecond: c.BytesPerSecond, BytesSent: c.BytesSent, ReportTime: tx.Now(),
	}
	tx.PutOperation(op)
	// On the instance too, so that WatchInstances shows it move; the
	// step's end clears it there (applyFinish).
	if inst, ok := tx.Instance(op.InstanceID); ok {
		inst.Copy = op.Copy
		tx.PutInstance(inst)
	}
	return nil, nil
}
