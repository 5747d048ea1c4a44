package lifecycle

// Status is the one derived word that describes an instance.
type Status string

const (
	StatusCreating          Status = "CREATING"
	StatusStarting          Status = "STARTING"
	StatusRunning           Status = "RUNNING"
	StatusStopping          Status = "STOPPING"
	StatusStopped           Status = "STOPPED"
	StatusRebooting         Status = "REBOOTING"
	StatusHardRebooting     Status = "HARD_REBOOTING"
	StatusPausing           Status = "PAUSING"
	StatusPaused            Status = "PAUSED"
	StatusUnpausing         Status = "UNPAUSING"
	StatusSuspending        Status = "SUSPENDING"
	StatusSuspended         Status = "SUSPENDED"
	StatusResuming          Status = "RESUMING"
	StatusDeleting          Status = "DELETING"
	StatusDeleted           Status = "DELETED"
	StatusError             Status = "ERROR"
	StatusUnknown           Status = "UNKNOWN"
	StatusUnexpectedShutoff Status = "UNEXPECTED_SHUTOFF"
	StatusCrashed           Status = "CRASHED"
	StatusPending           Status = "PENDING"  // accepted, waiting for a host with room
	StatusBidding           Status = "BIDDING"  // preemptible, waiting for spare capacity
	StatusMoving            Status = "MOVING"   // a move to another host runs
	StatusUpdating          Status = "UPDATING" // the model (name, labels, recovery) is being changed
	StatusResizing          Status = "RESIZING" // a resize runs (copying, or booting at the new shape)
	// StatusVerifyResize: resized, running (or off) at the new shape, with
	// the original kept until the user confirms or reverts.
	StatusVerifyResize     Status = "VERIFY_RESIZE"
	StatusConfirmingResize Status = "CONFIRMING_RESIZE" // the original is being removed
	StatusRevertingResize  Status = "REVERTING_RESIZE"  // the original is being brought back
	StatusExtending        Status = "EXTENDING"         // the disk grows in place
	StatusSettingPassword  Status = "SETTING_PASSWORD"  // a password is being set inside the guest
	// StatusDecommissioning: a stop or delete waits for the guest's
	// decommission work (its shutdown scripts), for a bounded time.
	StatusDecommissioning Status = "DECOMMISSIONING"
	// StatusStrandedDecommissioning: that work failed or ran out of time;
	// the stop or delete goes on and forces the domain off.
	StatusStrandedDecommissioning Status = "STRANDED_DECOMMISSIONING"
	// StatusFrozen: its project is frozen (seed 004's FROZEN, "due to
	// insufficient account balance", or an admin's lock): the guest is
	// paused (or stays off) and user actions are refused until unfrozen.
	StatusFrozen     Status = "FROZEN"
	StatusRebuilding Status = "REBUILDING" // a fresh disk from an image replaces the disk (Nova's REBUILD)
	StatusRescuing   Status = "RESCUING"   // the rescue system is being booted
	// StatusRescued: the rescue system runs with the instance's own disk
	// attached as its second disk (Nova's RESCUED).
	StatusRescued      Status = "RESCUED"
	StatusUnrescuing   Status = "UNRESCUING"   // back to booting from its own disk
	StatusBundling     Status = "BUNDLING"     // the stopped instance's disk becomes an image (seed 000's bundling)
	StatusDeallocating Status = "DEALLOCATING" // the domain is being undefined, its disk kept
	// StatusDeallocated: no domain, no capacity held on any host; the disk
	// is kept on the host that last ran it.
	StatusDeallocated Status = "DEALLOCATED"
	// StatusSoftDeleted: deleted, restorable until the retention window
	// ends (the domain is kept, off, and holds its host's capacity).
	StatusSoftDeleted Status = "SOFT_DELETED"
	StatusRestoring   Status = "RESTORING" // a soft-deleted instance is being brought back
	StatusUpgrading   Status = "UPGRADING" // a new image version or model is applied and checked
	// StatusRollback: an upgrade failed (or its guest never became
	// healthy) and the previous disk and model are being put back.
	StatusRollback Status = "ROLLBACK"
)

// AllStatuses lists every status.
var AllStatuses = []Status{
	StatusCreating, StatusStarting, StatusRunning, StatusStopping, StatusStopped,
	StatusRebooting, StatusHardRebooting, StatusPausing, StatusPaused, StatusUnpausing,
	StatusSuspending, StatusSuspended, StatusResuming, StatusDeleting, StatusDeleted,
	StatusError, StatusUnknown, StatusUnexpectedShutoff, StatusCrashed,
	StatusPending, StatusBidding, StatusMoving, StatusUpdating,
	StatusResizing, StatusVerifyResize, StatusConfirmingResize, StatusRevertingResize, StatusExtending,
	StatusSettingPassword,
	StatusDecommissioning, StatusStrandedDecommissioning,
	StatusFrozen,
	StatusRebuilding, StatusRescuing, StatusRescued, StatusUnrescuing, StatusBundling,
	StatusDeallocating, StatusDeallocated, StatusSoftDeleted, StatusRestoring, StatusUpgrading, StatusRollback,
}

// inFlight is the status shown while an operation of each kind runs.
var inFlight = map[OpKind]Status{
	OpCreate:        StatusCreating,
	OpStart:         StatusStarting,
	OpStop:          StatusStopping,
	OpRestart:       StatusRebooting,
	OpHardRestart:   StatusHardRebooting,
	OpPause:         StatusPausing,
	OpUnpause:       StatusUnpausing,
	OpSuspend:       StatusSuspending,
	OpResume:        StatusResuming,
	OpDelete:        StatusDeleting,
	OpPreempt:       StatusBidding, // evicted: it bids for capacity again
	OpMove:          StatusMoving,
	OpUpdate:        StatusUpdating,
	OpResize:        StatusResizing,
	OpConfirmResize: StatusConfirmingResize,
	OpRevertResize:  StatusRevertingResize,
	OpExtend:        StatusExtending,
	OpSetPassword:   StatusSettingPassword,
	OpRebuild:       StatusRebuilding,
	OpRescue:        StatusRescuing,
	OpUnrescue:      StatusUnrescuing,
	OpBundle:        StatusBundling,
	OpDeallocate:    StatusDeallocating,
	OpSoftDelete:    StatusDeleting, // Nova: task_state soft-deleting under DELETING's words
	OpRestore:       StatusRestoring,
	OpUpgrade:       StatusUpgrading,
}

// Transitional reports whether s only lasts while an operation runs.
func Transitional(s Status) bool {
	if s == StatusPending || s == StatusDecommissioning || s == StatusStrandedDecommissioning || s == StatusRollback {
		return true
	}
	for _, t := range inFlight {
		if t == s {
			return true
		}
	}
	return false
}

// Derive computes the status from the facts. It is total: every combination
// of known facts has a defined result, and unknown values fall to ERROR.
func Derive(f Facts) Status {
	if f.Op != OpNone {
		if f.Op == OpCreate && f.Unplaced {
			if f.Preemptible {
				return StatusBidding
			}
			return StatusPending
		}
		if f.Op == OpUpgrade && f.RollingBack {
			return StatusRollback
		}
		if f.Op == OpStop || f.Op == OpDelete || f.Op == OpSoftDelete {
			switch f.Decommission {
			case DecomRunning:
				return StatusDecommissioning
			case DecomFailed:
				return StatusStrandedDecommissioning
			}
		}
		if s, ok := inFlight[f.Op]; ok {
			return s
		}
		return StatusError
	}
	if f.Frozen && f.Desired != DesiredDeleted {
		// The lock hides what lies under it: paused by the freeze, or off.
		return StatusFrozen
	}
	if f.Desired == DesiredDeleted {
		// Once the domain is gone, the record is a tombstone whatever came before.
		if f.Power == PowerNoDomain && f.Result != ResultFailed {
			return StatusDeleted
		}
		return StatusError // a delete that failed or left the domain behind
	}
	if f.Result == ResultFailed {
		return StatusError
	}
	switch f.Desired {
	case DesiredDeallocated:
		// No domain anywhere; a host that cannot be reached changes nothing.
		if f.Power == PowerNoDomain || f.Power == PowerUnknown || f.Power == PowerNone {
			return StatusDeallocated
		}
		return StatusError // a domain came back that nobody defined
	case DesiredSoftDeleted:
		switch f.Power {
		case PowerShutOff:
			return StatusSoftDeleted
		case PowerUnknown:
			return StatusUnknown
		}
		return StatusError // running, or gone, while it should be kept off
	}
	if f.Unconfirmed && (f.Power == PowerRunning || f.Power == PowerShutOff && f.Desired == DesiredStopped) {
		// Resized and up (or off as asked): the original waits for a
		// confirm or a revert. Anything else (crashed, unexpectedly off,
		// unknown) shows as itself.
		return StatusVerifyResize
	}
	if f.Rescued && (f.Power == PowerRunning || f.Power == PowerShutOff) {
		// The rescue system runs (or was shut down from inside): still
		// rescued until an unrescue boots the instance's own disk again.
		return StatusRescued
	}
	switch f.Power {
	case PowerNone:
		// Accepted, but nothing has run and nothing was observed: only a
		// canceled create gets here.
		return StatusError
	case PowerUnknown:
		return StatusUnknown
	case PowerNoDomain:
		return StatusError // the domain vanished from under a live instance
	case PowerCrashed:
		return StatusCrashed
	case PowerShuttingDown:
		return StatusStopping // the guest is shutting itself down
	case PowerRunning:
		return StatusRunning
	case PowerPaused:
		return StatusPaused
	case PowerSavedToDisk:
		return StatusSuspended
	case PowerShutOff:
		if f.Desired == DesiredStopped {
			return StatusStopped
		}
		// Off although the user wants it up (or paused/suspended): nobody asked for that.
		return StatusUnexpectedShutoff
	}
	return StatusError
}
