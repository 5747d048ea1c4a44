package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// dedup returns the operation req's request id already produced, if any,
// or an error if that operation was asked for with other content.
func dedup(tx *state.Tx, req *state.Operation) (string, bool, error) {
	key := state.RequestKeyOf(req)
	if key == "" {
		return "", false, nil
	}
	id, ok := tx.RequestOperation(key)
	if !ok || req.RequestHash == "" {
		return id, ok, nil
	}
	if prev, found := tx.Operation(id); found && prev.RequestHash != "" && prev.RequestHash != req.RequestHash {
		return "", false, fmt.Errorf("request_id %q was used for operation %s with other content: %w", req.RequestID, id, ErrInvalid)
	}
	return id, true, nil
}

func applyCreateInstance(tx *state.Tx, c *CreateInstance) (any, error) {
	if id, ok, err := dedup(tx, &c.Operation); err != nil || ok {
		return id, err
	}
	if _, exists := tx.Instance(c.Instance.ID); exists {
		return nil, fmt.Errorf("instance %q: %w", c.Instance.ID, ErrAlreadyExists)
	}
	inst := c.Instance
	inst.NICs = slices.Clone(inst.NICs) // the body is reused (see def)
	inst.Placement.Bridges = nil
	if err := checkProject(tx, &inst); err != nil {
		return nil, err
	}
	if err := allocateNICs(tx, &inst); err != nil {
		return nil, err
	}
	if inst.HostID != "" {
		if err := checkPlacement(tx, &inst, inst.HostID, c.Policy); err != nil {
			return nil, err
		}
	}
	inst.Desired = lifecycle.DesiredRunning
	inst.CurrentOp, inst.CurrentOpK = c.Operation.ID, lifecycle.OpCreate
	inst.Power, inst.Result, inst.Fault = lifecycle.PowerNone, lifecycle.ResultNone, nil
	// A value, not newOperation's pointer: PutOperation keeps a copy, and
	// this one then stays on the stack (every replica applies every create).
	op := pendingOperation(tx, c.Operation, lifecycle.OpCreate, inst.HostID)
	if inst.HostID == "" {
		waitForCapacity(&op)
	}
	planImageFetch(tx, &inst, &op)
	tx.PutInstance(&inst)
	switch {
	case op.Steps != nil: // planned with an image fetch first
		tx.PutOperation(&op)
	case op.Graceful == 0:
		// The plan as it is, shared: the store would keep it instead of a
		// copy made here anyway (internSteps), and never copying it is
		// most of what planning cost every replica per create.
		tx.PutOperationPlanned(&op, sharedPlan(lifecycle.OpCreate, lifecycle.Shape{}))
	default:
		planSteps(&op, false)
		tx.PutOperation(&op)
	}
	if k := state.RequestKeyOf(&op); k != "" {
		tx.PutRequest(k, op.ID)
	}
	return op.ID, nil
}

func applyInstanceAction(tx *state.Tx, c *InstanceAction) (any, error) {
	if id, ok, err := dedup(tx, &c.Operation); err != nil || ok {
		return id, err
	}
	inst, ok := tx.Instance(c.Operation.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.Operation.InstanceID, ErrNotFound)
	}
	status := inst.Status()
	if err := lifecycle.Check(status, c.Action); err != nil {
		return nil, err
	}
	if status == lifecycle.StatusPending || status == lifecycle.StatusBidding {
		return withdraw(tx, inst, c.Operation)
	}
	plan := lifecycle.PlanFor(status, c.Action, c.Hard)
	if c.Action == lifecycle.ActionDelete {
		plan = lifecycle.PlanDelete(status, c.Retain, c.Operation.Force)
	}
	if !c.ReclaimBefore.IsZero() {
		if err := checkReclaim(tx, inst, status, c.ReclaimBefore); err != nil {
			return nil, err
		}
	}
	if plan.Op == lifecycle.OpRestore {
		plan.Desired = restoredDesired(tx, inst)
	}
	if (plan.Op == lifecycle.OpUpdate) != (c.Operation.Update != nil) {
		return nil, fmt.Errorf("a model to change goes with an update, and only with one: %w", ErrInvalid)
	}
	op := newOperation(tx, c.Operation, plan.Op, inst.HostID)
	// Planned again knowing whether the domain runs: a hard restart resets
	// a running one and boots one that is off.
	sh := lifecycle.Shape{WasRunning: plan.WasRunning, StartAfter: plan.WasRunning}
	if plan.Op == lifecycle.OpRestore {
		sh.StartAfter = plan.Desired == lifecycle.DesiredRunning
	}
	op.TargetHostID, op.Token, op.Resize, op.Image = "", "", nil, "" // only what prepareReshaping checked
	if reshaping(plan.Op) {
		var err error
		if sh, err = prepareReshaping(tx, inst, op, &c.Operation, status, c.Policy); err != nil {
			return nil, err
		}
	}
	if (plan.Op == lifecycle.OpResize || plan.Op == lifecycle.OpExtend) && op.Resize != nil {
		if err := checkReshape(tx, inst, op.Resize.To); err != nil {
			return nil, err
		}
	}
	if status == lifecycle.StatusDeallocated && plan.Op == lifecycle.OpStart {
		var err error
		if sh, err = prepareReallocation(tx, inst, op, &c.Operation, c.Policy); err != nil {
			return nil, err
		}
	}
	if status == lifecycle.StatusRunning && (plan.Op == lifecycle.OpStop || plan.Op == lifecycle.OpDelete || plan.Op == lifecycle.OpSoftDelete) {
		// Only a running guest can run its decommission work.
		sh.Decommission = op.Decommission
	}
	planShaped(op, sh)
	if st := op.Current(); st != nil && st.Action == lifecycle.ActDecommission {
		inst.Decommission = lifecycle.DecomRunning
	}
	if plan.Op == lifecycle.OpDelete && inst.Resize != nil && !inst.Resize.SameHost(inst.HostID) {
		// The original of an unconfirmed resize goes with the instance.
		op.TargetHostID = inst.Resize.Source
		op.Steps = append(op.Steps, newStep(lifecycle.StepDef{Name: "delete-original", Action: lifecycle.ActDelete,
			Where: lifecycle.OnTarget}))
	}
	op.PrevDesired = inst.Desired
	if plan.Desired != "" {
		inst.Desired = plan.Desired
	}
	if c.Action == lifecycle.ActionStart || c.Action == lifecycle.ActionStop || c.Action == lifecycle.ActionRestart {
		inst.Restarts = 0 // the user took over: automatic restarts count afresh
	}
	inst.CurrentOp, inst.CurrentOpK = op.ID, op.Kind
	tx.PutInstance(inst)
	tx.PutOperation(op)
	if k := state.RequestKeyOf(op); k != "" {
		tx.PutRequest(k, op.ID)
	}
	return op.ID, nil
}

func newOperation(tx *state.Tx, req state.Operation, kind lifecycle.OpKind, hostID string) *state.Operation {
	op := planOperation(tx, req, kind, hostID)
	return &op
}

// planOperation is newOperation's operation, as a value.
func planOperation(tx *state.Tx, req state.Operation, kind lifecycle.OpKind, hostID string) state.Operation {
	op := pendingOperation(tx, req, kind, hostID)
	planSteps(&op, false)
	return op
}

// pendingOperation is planOperation without the steps (nil).
func pendingOperation(tx *state.Tx, req state.Operation, kind lifecycle.OpKind, hostID string) state.Operation {
	op := req
	op.Kind = kind
	op.State = state.OpPending
	op.Step = "waiting-for-host"
	op.HostID = hostID
	op.CreateTime = tx.Now()
	op.Fault = nil
	if kind != lifecycle.OpMove {
		op.TargetHostID, op.Token = "", "" // only a move hands a disk over (a resize's are checked apart)
	}
	op.Steps, op.Cur = nil, 0
	return op
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

// checkPlacement is the commit-time check of a placement: the host is up
// and open, and the instance fits there as the state is now, so two
// placements decided concurrently against the same free space cannot both
// land, nor can one that breaks anti-affinity.
func checkPlacement(tx *state.Tx, inst *state.Instance, hostID string, policy scheduler.Policy) error {
	h, ok := tx.Host(hostID)
	if !ok || h.Status != state.HostReady || h.Cordoned {
		return fmt.Errorf("host %q: %w", hostID, ErrHostUnavailable)
	}
	load := tx.HostLoad(h.ID)
	sh, req := placement.WithLoad(*h, &load), placement.Request(inst.Spec, inst.Placement)
	if !scheduler.Fits(sh, req, policy) {
		return fmt.Errorf("host %q (%s): %w", h.ID, scheduler.Explain(req, []scheduler.Host{sh}, policy), ErrNoCapacity)
	}
	return nil
}

// waitForCapacity makes a create wait for a host: no host, and no deadline
// until it is placed (waiting is not work that can hang).
func waitForCapacity(op *state.Operation) {
	op.HostID = ""
	op.Step = "waiting-for-capacity"
	op.Deadline = time.Time{}
}

// withdraw deletes an instance that never got a host: its create is
// canceled and the delete is done at once, with nothing to do on a host.
func withdraw(tx *state.Tx, inst *state.Instance, req state.Operation) (any, error) {
	if inst.HostID != "" {
		// Being evicted: its domain is still being removed; one operation at a time.
		return nil, &lifecycle.NotAllowedError{Status: inst.Status(), Action: lifecycle.ActionDelete}
	}
	if create, ok := tx.Operation(inst.CurrentOp); ok && !create.State.Done() {
		create.State, create.Step, create.EndTime = state.OpCanceled, "canceled", tx.Now()
		create.Fault = &state.Fault{Code: "CANCELED", Message: "the instance was deleted while waiting for capacity", Time: tx.Now()}
		skipFrom(create, 0)
		tx.PutOperation(create)
	}
	del := newOperation(tx, req, lifecycle.OpDelete, "")
	del.Steps = nil // nothing exists on any host: the delete is only recorded
	del.State, del.Step, del.Progress, del.StartTime, del.EndTime = state.OpSucceeded, "done", 100, tx.Now(), tx.Now()
	inst.Desired = lifecycle.DesiredDeleted
	inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerNoDomain, "never-placed", tx.Now()
	inst.Result, inst.Fault = lifecycle.ResultSucceeded, nil
	inst.CurrentOp, inst.CurrentOpK, inst.LastOp, inst.LastOpK = "", lifecycle.OpNone, del.ID, lifecycle.OpDelete
	tx.PutOperation(del)
	tx.PutInstance(inst)
	if k := state.RequestKeyOf(del); k != "" {
		tx.PutRequest(k, del.ID)
	}
	return del.ID, nil
}

func applyPlace(tx *state.Tx, c *Place) (any, error) {
	inst, ok := tx.Instance(c.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.InstanceID, ErrNotFound)
	}
	op, ok := tx.Operation(inst.CurrentOp)
	if inst.HostID != "" || !ok || op.Kind != lifecycle.OpCreate || op.State != state.OpPending {
		return nil, fmt.Errorf("instance %q is not waiting for capacity: %w", inst.ID, ErrNotAllowed)
	}
	if err := checkPlacement(tx, inst, c.HostID, c.Policy); err != nil {
		return nil, err
	}
	inst.HostID = c.HostID
	op.HostID, op.Deadline, op.Step = c.HostID, c.Deadline, "waiting-for-host"
	planImageFetch(tx, inst, op)
	tx.PutInstance(inst)
	tx.PutOperation(op)
	return nil, nil
}

func applyPreempt(tx *state.Tx, c *Preempt) (any, error) {
	var started []string
	for _, v := range c.Victims {
		victim, ok := tx.Instance(v.InstanceID)
		// Re-checked at commit time: only a placed, idle, preemptible instance is evicted.
		if !ok || victim.HostID == "" || !victim.Placement.Preemptible || victim.CurrentOp != "" || victim.Desired == lifecycle.DesiredDeleted {
			continue
		}
		op := newOperation(tx, v, lifecycle.OpPreempt, victim.HostID)
		op.Step = "evicting"
		victim.CurrentOp, victim.CurrentOpK = op.ID, op.Kind
		tx.PutInstance(victim)
		tx.PutOperation(op)
		started = append(started, op.ID)
	}
	return started, nil
}

// applyPrune removes the deleted instances whose retention has passed,
// re-checking each at commit time (one deleted and then changed again, or
// no longer deleted, stays). The result lists those removed.
func applyPrune(tx *state.Tx, c *Prune) (any, error) {
	var removed []string
	seen := make(map[string]bool, len(c.InstanceIDs))
	for _, id := range c.InstanceIDs {
		inst, ok := tx.Instance(id)
		if !ok || seen[id] || inst.Status() != lifecycle.StatusDeleted || inst.UpdateTime.After(c.Before) {
			continue
		}
		seen[id] = true
		tx.RemoveInstance(id)
		removed = append(removed, id)
	}
	return removed, nil
}

// applyStartUsage turns usage recording on; the result says whether this
// entry did (a second one changes nothing).
func applyStartUsage(tx *state.Tx, _ *StartUsage) (any, error) {
	if tx.Metering() {
		return false, nil
	}
	tx.StartMetering()
	return true, nil
}

// reshaping reports the kinds prepareReshaping prepares.
func reshaping(k lifecycle.OpKind) bool {
	switch k {
	case lifecycle.OpMove, lifecycle.OpResize, lifecycle.OpExtend, lifecycle.OpConfirmResize, lifecycle.OpRevertResize,
		lifecycle.OpRebuild, lifecycle.OpRescue, lifecycle.OpUnrescue, lifecycle.OpBundle, lifecycle.OpUpgrade:
		return true
	}
	return false
}
