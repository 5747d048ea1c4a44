package lifecycle

import (
	"errors"
	"fmt"
	"strings"
)

// Action is a user action on an instance.
type Action string

const (
	ActionStart   Action = "start"
	ActionStop    Action = "stop"
	ActionRestart Action = "restart"
	ActionPause   Action = "pause"
	ActionUnpause Action = "unpause"
	ActionSuspend Action = "suspend"
	ActionResume  Action = "resume"
	ActionDelete  Action = "delete"
	// ActionUpdate changes what can change without a reboot (name, labels,
	// recovery policy): Azure's "Update model for an existing VM".
	ActionUpdate Action = "update"
	// ActionResize gives the instance a new shape (see OpResize).
	ActionResize        Action = "resize"
	ActionConfirmResize Action = "confirm-resize"
	ActionRevertResize  Action = "revert-resize"
	// ActionExtend grows the disk in place (seed 004's EXTENDING).
	ActionExtend Action = "extend"
	// ActionMove moves the instance to another host, cold.
	ActionMove Action = "move"
	// ActionSetPassword sets a user's password inside the running guest
	// (Nova's PASSWORD).
	ActionSetPassword Action = "set-password"
	// ActionRebuild gives the instance a fresh disk from an image (Nova's rebuild).
	ActionRebuild Action = "rebuild"
	// ActionRescue boots a rescue system over the instance's disk; ActionUnrescue ends it.
	ActionRescue   Action = "rescue"
	ActionUnrescue Action = "unrescue"
	// ActionBundle makes the stopped instance's disk an image (seed 000's bundle).
	ActionBundle Action = "bundle"
	// ActionDeallocate releases a stopped instance's host (Azure's
	// deallocate); a running one must be stopped first.
	ActionDeallocate Action = "deallocate"
	// ActionRestore brings a soft-deleted instance back as it was.
	ActionRestore Action = "restore"
	// ActionUpgrade changes the image version and/or machine model, rolling
	// back by itself when the guest does not become healthy.
	ActionUpgrade Action = "upgrade"
)

// AllActions lists every action.
var AllActions = []Action{ActionStart, ActionStop, ActionRestart, ActionPause, ActionUnpause, ActionSuspend, ActionResume, ActionDelete, ActionUpdate,
	ActionResize, ActionConfirmResize, ActionRevertResize, ActionExtend, ActionMove, ActionSetPassword,
	ActionRebuild, ActionRescue, ActionUnrescue, ActionBundle, ActionDeallocate, ActionRestore, ActionUpgrade}

// allowed is the whole transition table: the actions each status accepts.
// A status that is not listed accepts nothing (transitional statuses: one
// operation at a time per instance; DELETED: a tombstone). A restart of an
// instance that is off boots it (seed 000 restarts an offline instance, Nova
// hard-reboots a SHUTOFF server): see PlanFor.
var allowed = map[Status][]Action{
	StatusRunning: {ActionStop, ActionRestart, ActionPause, ActionSuspend, ActionDelete, ActionUpdate,
		ActionResize, ActionExtend, ActionMove, ActionSetPassword, ActionRebuild, ActionRescue, ActionUpgrade},
	// Resize and bundle from offline are seed 000's. Only a stopped
	// instance can be deallocated: a running one is refused, and told to stop.
	StatusStopped: {ActionStart, ActionRestart, ActionDelete, ActionUpdate, ActionResize, ActionExtend, ActionMove,
		ActionRebuild, ActionRescue, ActionBundle, ActionDeallocate, ActionUpgrade},
	// Rescued: only leaving the rescue system, or deleting, makes sense.
	StatusRescued: {ActionUnrescue, ActionDelete},
	// Started again, it is scheduled again (see StartShape).
	StatusDeallocated: {ActionStart, ActionDelete},
	// A delete of a soft-deleted instance reclaims it at once (forced).
	StatusSoftDeleted: {ActionRestore, ActionDelete},
	// The original is kept: confirm, revert, or delete both.
	StatusVerifyResize:      {ActionConfirmResize, ActionRevertResize, ActionDelete, ActionUpdate},
	StatusPaused:            {ActionUnpause, ActionStop, ActionSuspend, ActionDelete, ActionUpdate},
	StatusSuspended:         {ActionResume, ActionDelete, ActionUpdate},
	StatusUnexpectedShutoff: {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate},
	StatusCrashed:           {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate},
	// ERROR is recoverable: try to bring it up, down, or away (or fix its model).
	// A rebuild from ERROR is Nova's way out of a broken disk.
	StatusError: {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate, ActionRebuild},
	// The host cannot be reached: only a delete may be queued; it runs (or
	// fails at its deadline) when the host answers.
	StatusUnknown: {ActionDelete},
	// Waiting for capacity is not work on a host yet: the instance can be
	// withdrawn (by deleting it, or canceling its create).
	StatusPending: {ActionDelete},
	StatusBidding: {ActionDelete},
}

// Allowed returns the actions status s accepts, in a stable order.
func Allowed(s Status) []Action {
	return append([]Action(nil), allowed[s]...)
}

// ErrNotAllowed is wrapped by every refusal of an action.
var ErrNotAllowed = errors.New("action not allowed in the current status")

// NotAllowedError says which action was refused in which status, and what
// would have been accepted.
type NotAllowedError struct {
	Status  Status
	Action  Action
	Allowed []Action
}

func (e *NotAllowedError) Error() string {
	names := make([]string, len(e.Allowed))
	for i, a := range e.Allowed {
		names[i] = string(a)
	}
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none"
	}
	return fmt.Sprintf("%s is not allowed while the instance is %s (allowed: %s)", e.Action, e.Status, list)
}

func (e *NotAllowedError) Unwrap() error { return ErrNotAllowed }

// Check returns nil if status s accepts action a, else a *NotAllowedError.
func Check(s Status, a Action) error {
	for _, ok := range allowed[s] {
		if ok == a {
			return nil
		}
	}
	return &NotAllowedError{Status: s, Action: a, Allowed: Allowed(s)}
}

// Plan is what an accepted action asks for.
type Plan struct {
	Op      OpKind  // the operation to run; OpNone when nothing needs to run on the host
	Desired Desired // the desired state once the action is accepted; "" keeps it
	// WasRunning is StepsFor's wasRunning for the operation: false when the
	// status says the domain is off, so that a hard restart boots it.
	WasRunning bool
}

// off reports the statuses whose domain is shut off (or crashed), with no
// operation in flight: nothing runs that a reset or a guest could restart.
func off(s Status) bool {
	return s == StatusStopped || s == StatusDeallocated || s == StatusSoftDeleted || s == StatusUnexpectedShutoff || s == StatusCrashed || s == StatusSuspended
}

// PlanFor returns what accepting action a in status s means. It assumes
// Check(s, a) passed. hard selects a hard restart.
func PlanFor(s Status, a Action, hard bool) Plan {
	p := planFor(s, a, hard)
	p.WasRunning = !off(s)
	return p
}

func planFor(s Status, a Action, hard bool) Plan {
	switch a {
	case ActionStart:
		return Plan{Op: OpStart, Desired: DesiredRunning}
	case ActionStop:
		return Plan{Op: OpStop, Desired: DesiredStopped}
	case ActionRestart:
		if hard || s == StatusError || off(s) {
			// A soft reboot needs a cooperative running guest: from ERROR
			// only a reset is sound, and a guest that is off can only be
			// booted, which the hard restart's plan does (StepsFor).
			return Plan{Op: OpHardRestart, Desired: DesiredRunning}
		}
		return Plan{Op: OpRestart, Desired: DesiredRunning}
	case ActionPause:
		return Plan{Op: OpPause, Desired: DesiredPaused}
	case ActionUnpause:
		return Plan{Op: OpUnpause, Desired: DesiredRunning}
	case ActionSuspend:
		return Plan{Op: OpSuspend, Desired: DesiredSuspended}
	case ActionResume:
		return Plan{Op: OpResume, Desired: DesiredRunning}
	case ActionDelete:
		return Plan{Op: OpDelete, Desired: DesiredDeleted}
	case ActionUpdate:
		return Plan{Op: OpUpdate} // the power state is not the update's business
	case ActionResize:
		return Plan{Op: OpResize}
	case ActionConfirmResize:
		return Plan{Op: OpConfirmResize}
	case ActionRevertResize:
		return Plan{Op: OpRevertResize}
	case ActionExtend:
		return Plan{Op: OpExtend}
	case ActionMove:
		return Plan{Op: OpMove}
	case ActionSetPassword:
		return Plan{Op: OpSetPassword}
	case ActionRebuild:
		// The new disk boots before the old one goes (that is how a bad
		// image is found out), so the instance ends running.
		return Plan{Op: OpRebuild, Desired: DesiredRunning}
	case ActionRescue:
		return Plan{Op: OpRescue, Desired: DesiredRunning}
	case ActionUnrescue:
		return Plan{Op: OpUnrescue, Desired: DesiredRunning}
	case ActionBundle:
		return Plan{Op: OpBundle}
	case ActionDeallocate:
		return Plan{Op: OpDeallocate, Desired: DesiredDeallocated}
	case ActionRestore:
		// The desired state it had before the soft delete is the record's
		// (see RestoredDesired); the caller fills it in.
		return Plan{Op: OpRestore}
	case ActionUpgrade:
		return Plan{Op: OpUpgrade}
	}
	return Plan{}
}

// PlanDelete is a delete's plan: with a retention window (retain) a
// delete of a live instance is a soft delete, restorable within the
// window; a forced delete, or a delete of a soft-deleted instance,
// reclaims at once.
func PlanDelete(s Status, retain, force bool) Plan {
	p := PlanFor(s, ActionDelete, false)
	if retain && !force && s != StatusSoftDeleted && s != StatusPending && s != StatusBidding {
		p.Op, p.Desired = OpSoftDelete, DesiredSoftDeleted
	}
	return p
}

// RestoredDesired is the desired state a restore brings back: the one the
// instance had when it was soft-deleted (kept on its record), running when
// none was kept.
func RestoredDesired(before Desired) Desired {
	switch before {
	case DesiredRunning, DesiredStopped:
		return before
	case DesiredPaused, DesiredSuspended:
		// The soft delete stopped the guest: it comes back up.
		return DesiredRunning
	}
	return DesiredRunning
}

// Expected is the power state a successful operation of kind k leaves behind.
func Expected(k OpKind) Power {
	switch k {
	case OpCreate, OpStart, OpRestart, OpHardRestart, OpUnpause, OpResume, OpRebuild, OpRescue, OpUnrescue:
		return PowerRunning
	case OpStop:
		return PowerShutOff
	case OpPause:
		return PowerPaused
	case OpSuspend:
		return PowerSavedToDisk
	case OpDelete, OpDeallocate:
		return PowerNoDomain
	case OpSoftDelete:
		return PowerShutOff
	}
	return PowerNone
}
