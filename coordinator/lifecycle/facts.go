package lifecycle

// Desired is the state the user last asked for.
type Desired string

const (
	DesiredRunning   Desired = "running"
	DesiredStopped   Desired = "stopped"
	DesiredPaused    Desired = "paused"
	DesiredSuspended Desired = "suspended"
	DesiredDeleted   Desired = "deleted"
	// DesiredDeallocated: off, with the domain undefined and the host's
	// capacity released; the disk is kept (Azure's deallocated).
	DesiredDeallocated Desired = "deallocated"
	// DesiredSoftDeleted: deleted, but the domain (off) and its disk are
	// kept for the cluster's retention window (Nova's SOFT_DELETED).
	DesiredSoftDeleted Desired = "soft-deleted"
)

// AllDesired lists every desired state, for exhaustive tests.
var AllDesired = []Desired{DesiredRunning, DesiredStopped, DesiredPaused, DesiredSuspended, DesiredDeleted,
	DesiredDeallocated, DesiredSoftDeleted}

// OpKind names what an operation does.
type OpKind string

const (
	OpNone        OpKind = "" // no operation in flight
	OpCreate      OpKind = "create"
	OpStart       OpKind = "start"
	OpStop        OpKind = "stop"
	OpRestart     OpKind = "restart"
	OpHardRestart OpKind = "hard-restart"
	OpPause       OpKind = "pause"
	OpUnpause     OpKind = "unpause"
	OpSuspend     OpKind = "suspend"
	OpResume      OpKind = "resume"
	OpDelete      OpKind = "delete"
	// OpPreempt evicts a preemptible instance to make room; it then waits
	// for capacity again.
	OpPreempt OpKind = "preempt"
	// OpMove moves the instance to another host (cold: stop, copy the disk,
	// start it there as it was).
	OpMove OpKind = "move"
	// OpUpdate changes the instance's model (name, labels, recovery) without a reboot.
	OpUpdate OpKind = "update"
	// OpResize gives the instance a new shape (vCPUs, memory, a larger
	// disk), on its host or another; the original is kept until the
	// resize is confirmed or reverted.
	OpResize OpKind = "resize"
	// OpConfirmResize removes the original a resize kept.
	OpConfirmResize OpKind = "confirm-resize"
	// OpRevertResize brings the original back and removes the resized copy.
	OpRevertResize OpKind = "revert-resize"
	// OpExtend grows the disk in place, the guest running or not.
	OpExtend OpKind = "extend"
	// OpSetPassword sets a user's password inside the running guest.
	OpSetPassword OpKind = "set-password"
	// OpRebuild replaces the disk with a fresh one from an image, keeping
	// id, name, shape and host; the old disk is kept until the new one boots.
	OpRebuild OpKind = "rebuild"
	// OpRescue boots a rescue image with the instance's disk as its second disk.
	OpRescue OpKind = "rescue"
	// OpUnrescue boots the instance from its own disk again.
	OpUnrescue OpKind = "unrescue"
	// OpBundle makes the stopped instance's disk a new image.
	OpBundle OpKind = "bundle"
	// OpDeallocate undefines a stopped instance's domain and releases its
	// host's capacity, keeping the disk.
	OpDeallocate OpKind = "deallocate"
	// OpSoftDelete stops the instance and keeps its domain and disk for the
	// retention window.
	OpSoftDelete OpKind = "soft-delete"
	// OpRestore brings a soft-deleted instance back as it was.
	OpRestore OpKind = "restore"
	// OpUpgrade changes the instance's image version and/or machine model
	// through a plan that rolls back by itself when the guest does not
	// become healthy.
	OpUpgrade OpKind = "upgrade"
)

// AllOpKinds lists every operation kind, OpNone included.
var AllOpKinds = []OpKind{OpNone, OpCreate, OpStart, OpStop, OpRestart, OpHardRestart, OpPause, OpUnpause, OpSuspend, OpResume, OpDelete, OpPreempt, OpMove, OpUpdate,
	OpResize, OpConfirmResize, OpRevertResize, OpExtend, OpSetPassword, OpRebuild, OpRescue, OpUnrescue, OpBundle, OpDeallocate, OpSoftDelete, OpRestore, OpUpgrade}

// Power is the observed power state, as the agent reports it from the hypervisor.
type Power string

const (
	PowerNone         Power = "" // nothing reported yet
	PowerRunning      Power = "running"
	PowerPaused       Power = "paused"
	PowerShuttingDown Power = "shutting-down"
	PowerShutOff      Power = "shut-off"
	PowerCrashed      Power = "crashed"
	PowerSavedToDisk  Power = "saved-to-disk"
	PowerNoDomain     Power = "no-domain"
	PowerUnknown      Power = "unknown"
)

// AllPowers lists every power state, PowerNone included.
var AllPowers = []Power{PowerNone, PowerRunning, PowerPaused, PowerShuttingDown, PowerShutOff, PowerCrashed, PowerSavedToDisk, PowerNoDomain, PowerUnknown}

// Result is how the last operation ended.
type Result string

const (
	ResultNone      Result = ""
	ResultSucceeded Result = "succeeded"
	ResultFailed    Result = "failed"
	ResultCanceled  Result = "canceled"
	// ResultRolledBack: the operation failed, and what it had done was
	// undone; the instance is as it was before (its fault says why).
	ResultRolledBack Result = "rolled-back"
)

// AllResults lists every result, ResultNone included.
var AllResults = []Result{ResultNone, ResultSucceeded, ResultFailed, ResultCanceled, ResultRolledBack}

// Decommission is where a stop's or a delete's decommissioning is: the
// guest running its shutdown work before its domain goes down (RightScale's
// decommissioning).
type Decommission string

const (
	DecomNone    Decommission = ""        // none asked for, or it is over and succeeded
	DecomRunning Decommission = "running" // the guest runs (or is about to run) its decommission work
	// DecomFailed: the work failed or ran out of time; the stop or delete
	// goes on, forcing the domain off.
	DecomFailed Decommission = "failed"
)

// AllDecommissions lists every decommissioning fact.
var AllDecommissions = []Decommission{DecomNone, DecomRunning, DecomFailed}

// Facts are the four recorded facts the status is derived from, with
// qualifiers: Unplaced (a create still waiting for a host with room),
// Preemptible (the instance may be evicted, and so "bids" for capacity
// rather than waits for it), Unconfirmed (a resize finished and keeps the
// original until it is confirmed or reverted), RollingBack (the
// operation in flight is undoing what it did) and Decommission (where the
// stop or delete in flight is with its guest's decommission work).
type Facts struct {
	Desired      Desired
	Op           OpKind
	Power        Power
	Result       Result
	Unplaced     bool
	Preemptible  bool
	Unconfirmed  bool
	RollingBack  bool
	Decommission Decommission
	// Frozen: the instance's project is frozen (its balance ran out, or
	// an admin froze it).
	Frozen bool
	// Rescued: the instance's domain boots the rescue system, its own disk
	// attached second (a rescue succeeded; no unrescue yet).
	Rescued bool
}
