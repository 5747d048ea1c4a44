package fsm

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// The operations engine's rules, applied identically on every replica: an
// operation is a list of steps run one at a time; a step that fails with a
// transient fault waits and runs again (a new attempt, a new step id); one
// that fails for good, or a cancel, rolls back: the undo steps of what
// succeeded run newest first. The leader only decides when to send a step;
// every outcome is decided here.

// rollbackBudget is the time a rollback gets past the moment it starts, so
// that undoing is not cut short by the deadline the forward steps used up.
const rollbackBudget = 2 * time.Minute

// planSteps fills in an operation's steps from its kind's plan.
func planSteps(op *state.Operation, wasRunning bool) {
	planShaped(op, lifecycle.Shape{WasRunning: wasRunning, StartAfter: wasRunning})
}

// planShaped is planSteps for a plan that depends on more than wasRunning.
func planShaped(op *state.Operation, sh lifecycle.Shape) {
	op.Steps = stepPlan(op.Kind, sh)
	op.Cur = 0
	for i := range op.Steps {
		if st := op.Steps[i]; st.Timeout > 0 && st.Action == lifecycle.ActStop && op.Graceful > 0 {
			op.Steps[i].Timeout += op.Graceful // the guest's time to power off is on top
		}
	}
}

// stepPlans holds each kind's planned steps, built once: every operation
// is planned on every replica. They are never handed out: stepPlan gives
// every operation its own copy, so nothing in the fsm can write into a
// plan. The memory a copy per operation costs is won back behind the
// store's boundary (internSteps).
var stepPlans sync.Map // planKey -> []state.Step

type planKey struct {
	kind  lifecycle.OpKind
	shape lifecycle.Shape
}

// stepPlan returns a fresh copy of the plan of kind in shape sh.
func stepPlan(kind lifecycle.OpKind, sh lifecycle.Shape) []state.Step {
	if sh.Decommission > 0 {
		// Planned afresh: a cache keyed by every timeout asked for would
		// grow without bound.
		return newSteps(lifecycle.StepsForShape(kind, sh))
	}
	return state.CloneSteps(sharedPlan(kind, sh))
}

func newSteps(defs []lifecycle.StepDef) []state.Step {
	p := make([]state.Step, len(defs)) // exact capacity: an append (a rollback's undo steps) copies
	for i, d := range defs {
		p[i] = newStep(d)
	}
	return p
}

// sharedPlan returns the plan of kind in shape sh, shared: never to be changed.
func sharedPlan(kind lifecycle.OpKind, sh lifecycle.Shape) []state.Step {
	k := planKey{kind, sh}
	if p, ok := stepPlans.Load(k); ok {
		return p.([]state.Step)
	}
	v, _ := stepPlans.LoadOrStore(k, newSteps(lifecycle.StepsForShape(kind, sh)))
	return v.([]state.Step)
}

// kindPlans holds, per kind, its distinct plans over every shape.
var kindPlans sync.Map // lifecycle.OpKind -> [][]state.Step

func plansOf(kind lifecycle.OpKind) [][]state.Step {
	if ps, ok := kindPlans.Load(kind); ok {
		return ps.([][]state.Step)
	}
	var ps [][]state.Step
	for _, was := range []bool{false, true} {
		for _, same := range []bool{false, true} {
			for _, after := range []bool{false, true} {
				p := sharedPlan(kind, lifecycle.Shape{WasRunning: was, SameHost: same, StartAfter: after})
				if len(p) > 0 && !slices.ContainsFunc(ps, func(q []state.Step) bool { return state.EqualSteps(p, q) }) {
					ps = append(ps, p)
				}
			}
		}
	}
	v, _ := kindPlans.LoadOrStore(kind, ps)
	return v.([][]state.Step)
}

// internSteps returns, for the store to keep instead of a copy, the shared
// plan of kind when it equals an operation's steps (the operation has not
// begun), else nil: most creates wait for capacity or for their first
// dispatch with the plan untouched, and a copy each was a sixth of what
// the state held per create. Stored records are never written (the store
// copies on every read), so the sharing cannot leak a change between
// operations.
func internSteps(kind lifecycle.OpKind, steps []state.Step) []state.Step {
	if len(steps) == 0 || steps[0].State != state.StepPending {
		return nil
	}
	for _, p := range plansOf(kind) {
		if state.EqualSteps(steps, p) {
			return p
		}
	}
	return nil
}

func newStep(d lifecycle.StepDef) state.Step {
	s := state.Step{Name: d.Name, Action: d.Action, OnTarget: d.Where == lifecycle.OnTarget,
		State: state.StepPending, MaxAttempts: lifecycle.MaxAttempts, Force: d.Force,
		Irreversible: !d.Reversible(), Timeout: d.Timeout, Layer: d.Layer}
	if d.Action.BestEffort() {
		s.MaxAttempts = 1 // its time is the guest's: no second go
	}
	if d.Undo != nil {
		u := newStep(*d.Undo)
		u.IsUndo = true
		s.Undo = &u
	}
	return s
}

// beginAttempt marks the current step's next attempt as sent to its host.
// stepID must name that attempt, or the step's running attempt (a re-send
// on a new session); anything else is stale and changes nothing.
func beginAttempt(tx *state.Tx, op *state.Operation, stepID string, epoch uint64) bool {
	st := op.Current()
	if st == nil || !st.Action.OnHost() {
		return false
	}
	switch {
	case st.State == state.StepRunning && stepID == op.StepID(op.Cur, st.Attempt):
		if st.HostEpoch == epoch {
			return false // re-sent on the same session: nothing new to record
		}
	case (st.State == state.StepPending || st.State == state.StepRetryWait) && stepID == op.StepID(op.Cur, st.Attempt+1):
		st.Attempt++
		st.State = state.StepRunning
		if st.StartTime.IsZero() {
			st.StartTime = tx.Now()
		}
		st.Deadline = op.Deadline
		if st.Timeout > 0 && (op.Deadline.IsZero() || tx.Now().Add(st.Timeout).Before(op.Deadline)) {
			st.Deadline = tx.Now().Add(st.Timeout)
		}
		st.RetryTime = time.Time{}
	default:
		return false
	}
	st.HostEpoch = epoch
	op.State = state.OpRunning
	if op.RollingBack {
		op.State = state.OpRollingBack
	}
	op.HostEpoch = epoch
	op.Step = st.Name
	if op.StartTime.IsZero() {
		op.StartTime = tx.Now()
	}
	return true
}

// stepSucceeded records the current step's success and moves on.
func stepSucceeded(tx *state.Tx, op *state.Operation, inst *state.Instance, observed *Observation) {
	st := op.Current()
	st.State, st.EndTime, st.Fault = state.StepSucceeded, tx.Now(), nil
	if st.IsUndo && op.Steps[st.Undoes].State == state.StepSucceeded {
		op.Steps[st.Undoes].State = state.StepCompensated // a failed step stays failed
	}
	if op.StepHost(st) == inst.HostID && observed == nil {
		// The host said it succeeded; the state it reached is the expected one.
		if p := st.Action.Expect(); p != lifecycle.PowerNone {
			inst.Power, inst.PowerTime = p, tx.Now()
		}
	}
	if op.StepHost(st) == inst.HostID {
		reshaped(inst, op, st.Action)
	}
	imageHeld(tx, op, inst, st.Action, op.StepHost(st))
	if st.Action == lifecycle.ActDecommission {
		inst.Decommission = lifecycle.DecomNone // decommissioned: the stop or delete proper
	}
	if op.CancelRequested && !op.RollingBack {
		startRollback(tx, op, inst, nil)
		return
	}
	op.Cur++
	advance(tx, op, inst)
}

// stepFailed records the current attempt's failure: another attempt later
// for a transient fault with attempts left, else a rollback.
func stepFailed(tx *state.Tx, op *state.Operation, inst *state.Instance, fault *state.Fault) {
	if fault == nil {
		fault = &state.Fault{Code: "UNKNOWN", Message: "the step failed without a fault", Time: tx.Now()}
	}
	st := op.Current()
	st.Fault, st.EndTime = fault, tx.Now()
	retry := tx.Now().Add(lifecycle.Backoff(st.Attempt))
	if fault.Code == faultPeerRefused && offerAgain(op, retry) {
		return
	}
	// A cancel stops forward retries, not those of the undo steps it started.
	if lifecycle.Transient(fault.Code) && st.Attempt < st.MaxAttempts &&
		(!op.CancelRequested || op.RollingBack) && (op.Deadline.IsZero() || retry.Before(op.Deadline)) {
		st.State, st.RetryTime = state.StepRetryWait, retry
		op.Step = st.Name + " (waiting to retry)"
		return
	}
	st.State = state.StepFailed
	if st.Action.BestEffort() && !op.RollingBack {
		if op.CancelRequested {
			// Canceled meanwhile: its failure changed nothing to undo.
			startRollback(tx, op, inst, nil)
		} else {
			goOnAfter(tx, op, inst)
		}
		return
	}
	if op.RollingBack {
		// An undo failed: stop undoing; what is left is recorded, the
		// instance shows ERROR, and the user decides.
		f := *fault
		f.Message = fmt.Sprintf("rollback step %s failed: %s", st.Name, fault.Message)
		skipFrom(op, op.Cur+1)
		finish(tx, op, inst, state.OpFailed, &f, lifecycle.ResultFailed)
		return
	}
	startRollback(tx, op, inst, fault)
}

// goOnAfter goes on past a best-effort step that failed (its fault stays
// on the step): a decommission that failed or ran out of time strands the
// instance in decommissioning, and the stop or delete after it forces the
// domain off within lifecycle.StrandedWithin.
func goOnAfter(tx *state.Tx, op *state.Operation, inst *state.Instance) {
	if op.Current().Action == lifecycle.ActDecommission {
		inst.Decommission = lifecycle.DecomFailed
		for i := op.Cur + 1; i < len(op.Steps); i++ {
			if s := &op.Steps[i]; s.Action == lifecycle.ActStop || s.Action == lifecycle.ActDelete {
				s.Force, s.Timeout = true, lifecycle.StrandedWithin
			}
		}
	}
	op.Cur++
	advance(tx, op, inst)
}

// faultPeerRefused is the agents' fault for a pull the source refused.
const faultPeerRefused = "PEER_REFUSED"

// offerAgain goes back to the offer before a copy whose pull was refused
// (the source forgot its offer in an agent restart, or it expired): the
// source offers again and the target pulls again, instead of the whole
// operation rolling back. The copy's attempts bound how often.
func offerAgain(op *state.Operation, retry time.Time) bool {
	st := op.Current()
	if (st.Action != lifecycle.ActImportDisk && st.Action != lifecycle.ActReceiveDisk) || op.Cur == 0 || op.RollingBack ||
		op.CancelRequested || st.Attempt >= st.MaxAttempts || (!op.Deadline.IsZero() && !retry.Before(op.Deadline)) {
		return false
	}
	offer := &op.Steps[op.Cur-1]
	if offer.Action != lifecycle.ActOfferDisk || offer.Layer != st.Layer || offer.State != state.StepSucceeded {
		return false
	}
	st.State = state.StepPending // its attempts count on
	offer.State, offer.EndTime = state.StepPending, time.Time{}
	op.Cur--
	op.Step = offer.Name + " (again: the pull was refused)"
	return true
}

// partlyCopied reports a disk copy that failed with an outcome nobody knows:
// its agent restarted under it, or it ran past its deadline. It may have
// left part of a disk on the target, so a rollback runs its undo too (the
// removal of what the target holds of the instance, which does nothing
// where nothing is). Other steps interrupted so are issue 19's: the
// hypervisor is to be asked what they did.
func partlyCopied(s *state.Step) bool {
	return s.State == state.StepFailed && (s.Action == lifecycle.ActReceiveDisk || s.Action == lifecycle.ActImportDisk) &&
		s.Fault != nil && (s.Fault.Code == "AGENT_RESTARTED" || s.Fault.Code == "DEADLINE_EXCEEDED")
}

// startRollback skips the steps not run yet and queues the undo of every
// step that succeeded, newest first. fault is nil for a cancel.
func startRollback(tx *state.Tx, op *state.Operation, inst *state.Instance, fault *state.Fault) {
	if fault != nil {
		op.Fault = fault
	}
	op.RollingBack = true
	// Undo newest first, back to the last point of no return: what came
	// before it stays done (the operation can only go forward from there).
	var undos []state.Step
	for i := len(op.Steps) - 1; i >= 0; i-- {
		s := op.Steps[i]
		if s.IsUndo || (s.State != state.StepSucceeded && !partlyCopied(&s)) {
			continue
		}
		if s.Irreversible {
			break
		}
		if s.Undo != nil {
			u := *s.Undo
			u.Undoes = i
			undos = append(undos, u)
		}
	}
	skipFrom(op, op.Cur)
	op.Cur = len(op.Steps)
	op.Steps = append(op.Steps, undos...)
	if len(undos) == 0 && fault != nil {
		// Nothing to undo: the failure stands as it is.
		finish(tx, op, inst, state.OpFailed, fault, failedResult(tx, op, inst))
		return
	}
	if len(undos) > 0 {
		inst.RollingBack = true
		op.State, op.Step = state.OpRollingBack, "rolling-back"
		if until := tx.Now().Add(rollbackBudget); op.Deadline.Before(until) {
			op.Deadline = until
		}
	}
	advance(tx, op, inst)
}

// failedResult is what a failed operation with nothing left to undo means
// for its instance. Usually the failure itself (ERROR); but a move (or a
// resize, its confirm and revert, an extend) touches the instance only
// through its own steps: one whose failed step did not act on the
// instance's domain (an offer, a copy, a grow that did not happen, anything
// on the target) leaves it as it was, and one that failed after the switch
// leaves it running where it moved (the leftover on the source shows as an
// orphan there). An update never touches the power state, and its model is
// applied only on success: a failed one leaves the instance as it was. So
// does a password a guest did not set: nothing but the guest was asked.
//
// A failure whose outcome nobody can know (AGENT_RESTARTED: the agent died
// under a step, and the hypervisor cannot tell whether it acted) is not
// shown as ERROR when the host observes the domain: the instance shows that
// truth (a running guest is RUNNING), and the fault stays on the operation.
func failedResult(tx *state.Tx, op *state.Operation, inst *state.Instance) lifecycle.Result {
	if tx.LogVersion() >= LogVersion10 && op.Fault != nil && op.Fault.Code == "AGENT_RESTARTED" && observedDomain(inst.Power) &&
		inst.Desired != lifecycle.DesiredDeleted {
		return lifecycle.ResultSucceeded
	}
	switch op.Kind {
	case lifecycle.OpMove, lifecycle.OpUpdate, lifecycle.OpResize, lifecycle.OpConfirmResize, lifecycle.OpRevertResize, lifecycle.OpExtend,
		lifecycle.OpSetPassword, lifecycle.OpBundle, lifecycle.OpUpgrade:
	default:
		return lifecycle.ResultFailed
	}
	if inst.HostID == op.TargetHostID {
		return lifecycle.ResultSucceeded
	}
	for i := range op.Steps {
		s := &op.Steps[i]
		if s.State == state.StepFailed && !s.IsUndo && op.StepHost(s) == inst.HostID && s.Action.Expect() != lifecycle.PowerNone {
			return lifecycle.ResultFailed // it acted on the domain, with an unknown outcome
		}
	}
	return lifecycle.ResultRolledBack
}

// observedDomain says the host sees the instance's domain in a definite state.
func observedDomain(p lifecycle.Power) bool {
	switch p {
	case lifecycle.PowerRunning, lifecycle.PowerPaused, lifecycle.PowerShuttingDown, lifecycle.PowerShutOff,
		lifecycle.PowerCrashed, lifecycle.PowerSavedToDisk:
		return true
	}
	return false
}

// skipFrom marks the steps from index i on that have not run (pending, or
// waiting to retry) as skipped.
func skipFrom(op *state.Operation, i int) {
	for ; i < len(op.Steps); i++ {
		if st := &op.Steps[i]; st.State == state.StepPending || st.State == state.StepRetryWait {
			st.State = state.StepSkipped
		}
	}
}

// advance runs the coordinator's own steps at the current position and
// ends the operation when no step is left.
func advance(tx *state.Tx, op *state.Operation, inst *state.Instance) {
	for st := op.Current(); st != nil && !st.Action.OnHost(); st = op.Current() {
		st.Attempt, st.StartTime, st.EndTime = 1, tx.Now(), tx.Now()
		if h, ok := tx.Host(op.TargetHostID); !ok || h.Status != state.HostReady {
			// The target went away after taking the instance: do not hand it
			// over to a host that cannot be reached; undo instead.
			st.State = state.StepRunning
			stepFailed(tx, op, inst, &state.Fault{Code: "TARGET_UNAVAILABLE", Time: tx.Now(), HostID: op.TargetHostID,
				Message: fmt.Sprintf("host %s is not ready; the instance stays on %s", op.TargetHostID, op.HostID)})
			return
		}
		switchHost(tx, op, inst)
		st.State = state.StepSucceeded
		op.Cur++
	}
	if st := op.Current(); st != nil {
		op.Step = st.Name
		op.Progress = progress(op)
		return
	}
	switch {
	case !op.RollingBack:
		finish(tx, op, inst, state.OpSucceeded, nil, lifecycle.ResultSucceeded)
	case op.CancelRequested:
		finish(tx, op, inst, state.OpCanceled, &state.Fault{Code: "CANCELED",
			Message: "canceled by the user; what had been done was undone", Time: tx.Now()}, lifecycle.ResultCanceled)
	default:
		finish(tx, op, inst, state.OpFailed, op.Fault, lifecycle.ResultRolledBack)
	}
}

// switchHost makes a move's target the instance's host: from here on the
// target's reports are the instance's, and the source's are not.
func switchHost(tx *state.Tx, op *state.Operation, inst *state.Instance) {
	inst.HostID, inst.MoveTarget = op.TargetHostID, ""
	switch op.Kind {
	case lifecycle.OpResize:
		inst.Spec = op.Resize.To // the original stays on the source until confirmed
	case lifecycle.OpRevertResize:
		inst.Spec, inst.Resize = op.Resize.From, nil // the original is the instance again
	}
	inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerShutOff, "moved", tx.Now()
	for _, s := range op.Steps {
		if s.OnTarget && s.State == state.StepSucceeded && !s.IsUndo {
			if p := s.Action.Expect(); p != lifecycle.PowerNone {
				inst.Power = p
			}
		}
	}
}

func progress(op *state.Operation) int32 {
	done := 0
	for _, s := range op.Steps {
		if s.State == state.StepSucceeded || s.State == state.StepCompensated {
			done++
		}
	}
	return int32(100 * done / len(op.Steps))
}

// finish ends an operation and records its outcome on the instance.
func finish(tx *state.Tx, op *state.Operation, inst *state.Instance, end state.OpState, fault *state.Fault, result lifecycle.Result) {
	op.State, op.EndTime, op.Fault = end, tx.Now(), fault
	op.Token = "" // the disk hand-over is over: the secret is not kept
	if op.Kind == lifecycle.OpMove || op.Kind == lifecycle.OpResize || op.Kind == lifecycle.OpStart {
		inst.MoveTarget = "" // the room held on the target is released
	}
	inst.RollingBack = false
	inst.Decommission = lifecycle.DecomNone
	endReshaping(tx, inst, op, end)
	op.Step = string(end)
	if end == state.OpSucceeded {
		op.Step, op.Progress = "done", 100
		if op.Update != nil {
			op.Update.Apply(inst)
		}
	}
	if op.Kind == lifecycle.OpUpdate || op.Kind == lifecycle.OpConfirmResize {
		// A model update (or a confirm, which removes only the original)
		// says nothing about the guest: the instance keeps
		// the outcome (and fault) of the last operation that acted on it,
		// so an update never hides an ERROR; its own outcome is on its
		// operation.
		if inst.CurrentOp == op.ID {
			inst.CurrentOp, inst.CurrentOpK = "", lifecycle.OpNone
		}
		return
	}
	inst.Result, inst.Fault = result, fault
	if end == state.OpCanceled {
		inst.Fault = nil
	}
	if result == lifecycle.ResultCanceled || result == lifecycle.ResultRolledBack {
		// Everything done was undone: the user's previous wish stands.
		if op.PrevDesired != "" {
			inst.Desired = op.PrevDesired
		}
		if op.Kind == lifecycle.OpCreate {
			// Nothing is left of it: a canceled create leaves a tombstone.
			inst.Desired = lifecycle.DesiredDeleted
			if inst.Power == lifecycle.PowerNone {
				inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerNoDomain, "never-created", tx.Now()
			}
		}
	}
	endOperation(inst, op)
}

// cancellable says whether a running operation can still be rolled back:
// no step that ran or runs is a point of no return.
func cancellable(op *state.Operation) (bool, string) {
	switch {
	case op.State.Done():
		return false, fmt.Sprintf("it is %s", op.State)
	case op.Kind == lifecycle.OpPreempt:
		return false, "an eviction is not the user's to cancel"
	case op.State == state.OpPending:
		return true, ""
	case op.RollingBack:
		return false, "it is already rolling back"
	}
	for i := 0; i <= op.Cur && i < len(op.Steps); i++ {
		s := op.Steps[i]
		if s.Irreversible && s.State != state.StepPending {
			return false, fmt.Sprintf("step %s cannot be undone", s.Name)
		}
	}
	return true, ""
}

// Cancellable reports whether CancelOperation would be accepted now.
func Cancellable(op *state.Operation) bool {
	ok, _ := cancellable(op)
	return ok
}
