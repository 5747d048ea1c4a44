package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// applyDispatch marks each step attempt as sent to its host. A step that is
// no longer current (its operation ended or moved on meanwhile) is skipped;
// the others are still recorded. The result lists the step ids to send.
func applyDispatch(tx *state.Tx, c *Dispatch) (any, error) {
	var sent []string
	for _, d := range c.Steps {
		op, ok := tx.Operation(d.OperationID)
		if !ok || op.State.Done() {
			continue
		}
		if st := op.Current(); st != nil && st.State == state.StepRunning && d.StepID == op.StepID(op.Cur, st.Attempt) && st.HostEpoch == d.HostEpoch {
			sent = append(sent, d.StepID) // re-sent on the same session: nothing new to record
			continue
		}
		if beginAttempt(tx, op, d.StepID, d.HostEpoch) {
			sent = append(sent, d.StepID)
			tx.PutOperation(op)
		}
	}
	return sent, nil
}

func applyFinish(tx *state.Tx, c *Finish) (any, error) {
	op, ok := tx.Operation(c.OperationID)
	if !ok {
		return nil, fmt.Errorf("operation %q: %w", c.OperationID, ErrNotFound)
	}
	inst, ok := tx.Instance(op.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", op.InstanceID, ErrNotFound)
	}
	if c.Observed != nil && c.HostID == inst.HostID {
		observe(inst, *c.Observed)
	}
	st := op.Current()
	switch {
	case c.Abort && st == nil && !op.State.Done():
		// No step to blame (recorded before operations had steps).
		finish(tx, op, inst, state.OpFailed, c.Fault, lifecycle.ResultFailed)
	case op.State.Done() || st == nil || (!c.Abort && (st.State != state.StepRunning || (c.StepID != "" && c.StepID != op.StepID(op.Cur, st.Attempt)))):
		// A late or stale result cannot change the operation, but the
		// state it reports is still news (a refusal would discard it).
		if c.Observed != nil && c.HostID == inst.HostID {
			tx.PutInstance(inst)
			return "late", nil
		}
		if op.State.Done() {
			return nil, fmt.Errorf("operation %q: %w", op.ID, ErrOperationDone)
		}
		return nil, fmt.Errorf("operation %q, step %q: %w", op.ID, c.StepID, ErrStaleStep)
	case c.Abort:
		// The operation's deadline passed: the running step counts as
		// failed, and what is done is undone under the rollback's own
		// budget; a rollback past the deadline ends at once.
		if st.State == state.StepRunning || st.State == state.StepRetryWait {
			st.State, st.Fault, st.EndTime = state.StepFailed, c.Fault, tx.Now()
		} else {
			st.State = state.StepSkipped
		}
		if op.RollingBack {
			skipFrom(op, op.Cur+1)
			finish(tx, op, inst, state.OpFailed, c.Fault, lifecycle.ResultFailed)
		} else {
			startRollback(tx, op, inst, c.Fault)
		}
	case c.HostID != "" && c.HostID != op.StepHost(st):
		return nil, fmt.Errorf("operation %q step %s runs on %q, not %q: %w", op.ID, st.Name, op.StepHost(st), c.HostID, ErrWrongHost)
	case c.Succeeded:
		st.Note = c.Note
		stepSucceeded(tx, op, inst, c.Observed)
	default:
		stepFailed(tx, op, inst, c.Fault)
	}
	inst.Copy = nil // a step ended: a copy's progress is over (see applyCopyProgress)
	tx.PutOperation(op)
	if op.State == state.OpSucceeded && op.Kind == lifecycle.OpPreempt {
		rebid(tx, inst, op)
	}
	tx.PutInstance(inst)
	return nil, nil
}

// rebid sends an evicted instance back to waiting: its domain is gone from
// the host, and a new create waits (BIDDING) for spare capacity.
func rebid(tx *state.Tx, inst *state.Instance, evict *state.Operation) {
	create := newOperation(tx, state.Operation{ID: evict.ID + "-rebid", InstanceID: inst.ID}, lifecycle.OpCreate, "")
	waitForCapacity(create)
	inst.HostID = ""
	inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerNone, "preempted", tx.Now()
	inst.CurrentOp, inst.CurrentOpK = create.ID, create.Kind
	tx.PutOperation(create)
}

func applyCancel(tx *state.Tx, c *Cancel) (any, error) {
	op, ok := tx.Operation(c.OperationID)
	if !ok {
		return nil, fmt.Errorf("operation %q: %w", c.OperationID, ErrNotFound)
	}
	if op.State.Done() {
		return nil, fmt.Errorf("operation %q is %s: %w", op.ID, op.State, ErrOperationDone)
	}
	inst, ok := tx.Instance(op.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", op.InstanceID, ErrNotFound)
	}
	if op.State == state.OpPending && op.Kind != lifecycle.OpPreempt {
		// Nothing was done on a host: the user's previous wish stands.
		skipFrom(op, op.Cur)
		finish(tx, op, inst, state.OpCanceled, &state.Fault{Code: "CANCELED",
			Message: "canceled by the user before it reached the host", Time: tx.Now()}, lifecycle.ResultCanceled)
		tx.PutOperation(op)
		tx.PutInstance(inst)
		return nil, nil
	}
	if ok, why := cancellable(op); !ok {
		return nil, fmt.Errorf("operation %q cannot be canceled now: %s: %w", op.ID, why, ErrNotCancellable)
	}
	op.CancelRequested = true
	if st := op.Current(); st == nil || st.State != state.StepRunning {
		// Between steps, or waiting to retry: roll back now.
		startRollback(tx, op, inst, nil)
	}
	tx.PutOperation(op)
	tx.PutInstance(inst)
	return nil, nil
}

func endOperation(inst *state.Instance, op *state.Operation) {
	if inst.CurrentOp == op.ID {
		inst.CurrentOp, inst.CurrentOpK = "", lifecycle.OpNone
	}
	inst.LastOp, inst.LastOpK = op.ID, op.Kind
}
