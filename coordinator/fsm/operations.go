package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// applyDispatch marks each step as running on its host. An operation that
// ended meanwhile is skipped; the others are still recorded.
func applyDispatch(tx *state.Tx, c *Dispatch) (any, error) {
	var sent []string
	for _, d := range c.Steps {
		op, ok := tx.Operation(d.OperationID)
		if !ok || op.State.Done() {
			continue
		}
		sent = append(sent, op.ID)
		if op.State == state.OpRunning && op.HostEpoch == d.HostEpoch {
			continue // re-sent on the same session: nothing new to record
		}
		op.State = state.OpRunning
		op.HostEpoch = d.HostEpoch
		op.Step = "running-on-host"
		if op.StartTime.IsZero() {
			op.StartTime = tx.Now()
		}
		tx.PutOperation(op)
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
	if op.State.Done() {
		// A late result (e.g. after the deadline ended the operation) still
		// tells us the domain's state, but cannot reopen the operation.
		if c.Observed != nil {
			tx.PutInstance(inst)
		}
		return nil, fmt.Errorf("operation %q: %w", op.ID, ErrOperationDone)
	}
	op.EndTime = tx.Now()
	op.Progress = 100
	op.Step = "done"
	if c.Succeeded {
		op.State = state.OpSucceeded
		inst.Result, inst.Fault = lifecycle.ResultSucceeded, nil
		if c.Observed == nil {
			// The host said it succeeded; the state it reached is the expected one.
			inst.Power, inst.PowerTime = lifecycle.Expected(op.Kind), tx.Now()
		}
	} else {
		op.State = state.OpFailed
		op.Fault = c.Fault
		inst.Result, inst.Fault = lifecycle.ResultFailed, c.Fault
	}
	endOperation(inst, op)
	tx.PutOperation(op)
	if c.Succeeded && op.Kind == lifecycle.OpPreempt {
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
	if op.State != state.OpPending {
		// Once on the host, a step runs to its end; rolling back a
		// half-done step is the operations engine's job, not this one's.
		return nil, fmt.Errorf("operation %q is already running on its host: %w", op.ID, ErrNotCancellable)
	}
	inst, ok := tx.Instance(op.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", op.InstanceID, ErrNotFound)
	}
	op.State = state.OpCanceled
	op.EndTime = tx.Now()
	op.Step = "canceled"
	op.Fault = &state.Fault{Code: "CANCELED", Message: "canceled by the user before it reached the host", Time: tx.Now()}
	inst.Result = lifecycle.ResultCanceled
	// Nothing was done on the host: the user's previous wish stands.
	if op.PrevDesired != "" {
		inst.Desired = op.PrevDesired
	}
	if op.Kind == lifecycle.OpCreate {
		// Nothing was ever made: a canceled create leaves a tombstone.
		inst.Desired = lifecycle.DesiredDeleted
		inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerNoDomain, "never-created", tx.Now()
	}
	endOperation(inst, op)
	tx.PutOperation(op)
	tx.PutInstance(inst)
	return nil, nil
}

func endOperation(inst *state.Instance, op *state.Operation) {
	if inst.CurrentOp == op.ID {
		inst.CurrentOp, inst.CurrentOpK = "", lifecycle.OpNone
	}
	inst.LastOp = op.ID
}
