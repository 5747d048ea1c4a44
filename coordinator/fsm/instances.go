package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// dedup returns the operation a request_id already produced, if any.
func dedup(tx *state.Tx, requestID string) (string, bool) {
	if requestID == "" {
		return "", false
	}
	return tx.RequestOperation(requestID)
}

func applyCreateInstance(tx *state.Tx, c *CreateInstance) (any, error) {
	if id, ok := dedup(tx, c.Operation.RequestID); ok {
		return id, nil
	}
	if _, exists := tx.Instance(c.Instance.ID); exists {
		return nil, fmt.Errorf("instance %q: %w", c.Instance.ID, ErrAlreadyExists)
	}
	h, ok := tx.Host(c.Instance.HostID)
	if !ok || h.Status != state.HostReady || h.Cordoned {
		return nil, fmt.Errorf("host %q: %w", c.Instance.HostID, ErrHostUnavailable)
	}
	// Checked again at commit time, against the state as it is now: two
	// placements decided concurrently against the same free space cannot
	// both land, nor can one that breaks anti-affinity.
	var placed []state.Instance
	for _, i := range tx.InstancesOnHost(h.ID) {
		placed = append(placed, *i)
	}
	if !scheduler.Fits(placement.Host(*h, placed), placement.Request(c.Instance.Spec, c.Instance.Placement), c.Policy) {
		return nil, fmt.Errorf("host %q: %w", h.ID, ErrNoCapacity)
	}
	inst := c.Instance
	inst.Desired = lifecycle.DesiredRunning
	inst.CurrentOp, inst.CurrentOpK = c.Operation.ID, lifecycle.OpCreate
	inst.Power, inst.Result, inst.Fault = lifecycle.PowerNone, lifecycle.ResultNone, nil
	op := newOperation(tx, c.Operation, lifecycle.OpCreate, h.ID)
	tx.PutInstance(&inst)
	tx.PutOperation(op)
	if op.RequestID != "" {
		tx.PutRequest(op.RequestID, op.ID)
	}
	return op.ID, nil
}

func applyInstanceAction(tx *state.Tx, c *InstanceAction) (any, error) {
	if id, ok := dedup(tx, c.Operation.RequestID); ok {
		return id, nil
	}
	inst, ok := tx.Instance(c.Operation.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.Operation.InstanceID, ErrNotFound)
	}
	status := inst.Status()
	if err := lifecycle.Check(status, c.Action); err != nil {
		return nil, err
	}
	plan := lifecycle.PlanFor(status, c.Action, c.Hard)
	op := newOperation(tx, c.Operation, plan.Op, inst.HostID)
	inst.Desired = plan.Desired
	if c.Action == lifecycle.ActionStart || c.Action == lifecycle.ActionStop {
		inst.Restarts = 0 // the user took over: automatic restarts count afresh
	}
	inst.CurrentOp, inst.CurrentOpK = op.ID, op.Kind
	tx.PutInstance(inst)
	tx.PutOperation(op)
	if op.RequestID != "" {
		tx.PutRequest(op.RequestID, op.ID)
	}
	return op.ID, nil
}

func newOperation(tx *state.Tx, req state.Operation, kind lifecycle.OpKind, hostID string) *state.Operation {
	op := req
	op.Kind = kind
	op.State = state.OpPending
	op.Step = "waiting-for-host"
	op.HostID = hostID
	op.CreateTime = tx.Now()
	op.Fault = nil
	return &op
}

// applyRecover acts on an instance that stopped or crashed on its own. It
// re-checks at commit time that the instance still is in that state and
// still has restarts left, so a late or repeated decision does nothing.
func applyRecover(tx *state.Tx, c *Recover) (any, error) {
	inst, ok := tx.Instance(c.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.InstanceID, ErrNotFound)
	}
	status := inst.Status()
	if status != lifecycle.StatusUnexpectedShutoff && status != lifecycle.StatusCrashed {
		return nil, fmt.Errorf("instance %q is %s: %w", inst.ID, status, ErrNotAllowed)
	}
	switch inst.Recovery.Policy {
	case state.RecoverRestart:
		if c.Restart == nil || inst.Restarts >= inst.Recovery.MaxRestarts {
			return nil, fmt.Errorf("instance %q: no restarts left (%d of %d): %w", inst.ID, inst.Restarts, inst.Recovery.MaxRestarts, ErrNotAllowed)
		}
		op := newOperation(tx, *c.Restart, lifecycle.OpStart, inst.HostID)
		op.InstanceID = inst.ID
		inst.CurrentOp, inst.CurrentOpK = op.ID, op.Kind
		inst.Restarts++
		tx.PutOperation(op)
		tx.PutInstance(inst)
		return op.ID, nil
	case state.RecoverMarkFailed:
		inst.Result = lifecycle.ResultFailed
		inst.Fault = &state.Fault{Code: "GUEST_STOPPED_UNEXPECTEDLY", Time: tx.Now(), HostID: inst.HostID,
			Message: fmt.Sprintf("the guest went %s (%s) without a request; recovery policy: mark failed", inst.Power, inst.PowerWhy)}
		tx.PutInstance(inst)
		return nil, nil
	}
	return nil, fmt.Errorf("instance %q: recovery policy is leave: %w", inst.ID, ErrNotAllowed)
}
