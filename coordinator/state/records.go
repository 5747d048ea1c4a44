package state

import (
	"fmt"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// Spec is the shape of a virtual machine.
type Spec struct {
	VCPUs     uint32 `json:"vcpus"`
	MemoryMiB uint64 `json:"memory_mib"`
	DiskGiB   uint64 `json:"disk_gib"`
	Image     string `json:"image"`
}

// Fault records why something failed.
type Fault struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
	HostID  string    `json:"host_id,omitempty"`
}

// Instance is one VM's record: its four facts and bookkeeping.
type Instance struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Spec       Spec              `json:"spec"`
	HostID     string            `json:"host_id"`
	Desired    lifecycle.Desired `json:"desired"`
	CurrentOp  string            `json:"current_op,omitempty"`
	Copy       *CopyProgress     `json:"copy,omitempty"` // of a copy step of CurrentOp while it runs (see applyCopyProgress)
	CurrentOpK lifecycle.OpKind  `json:"current_op_kind,omitempty"`
	LastOp     string            `json:"last_op,omitempty"`
	// LastOp, LastOpK, Result and Fault are the last operation that acted
	// on the instance (a model update does not) and how it ended. LastOpK
	// is kept because the seeds' words for a failure depend on what failed
	// (seed 004's CREATEFAILED).
	LastOpK    lifecycle.OpKind `json:"last_op_kind,omitempty"`
	Result     lifecycle.Result `json:"result,omitempty"`
	Fault      *Fault           `json:"fault,omitempty"`
	Power      lifecycle.Power  `json:"power,omitempty"`
	PowerWhy   string           `json:"power_reason,omitempty"`
	PowerTime  time.Time        `json:"power_time"`
	CreateTime time.Time        `json:"create_time"`
	UpdateTime time.Time        `json:"update_time"`
	CreateRev  int64            `json:"create_rev"`
	ModifyRev  int64            `json:"modify_rev"`
	Recovery   Recovery         `json:"recovery"`
	Restarts   int32            `json:"restarts,omitempty"` // automatic, since the user's last start/stop
	Placement  Placement        `json:"placement"`
	// MoveTarget is, while a move runs, the host it goes to: the instance
	// takes room there too, from the move's start until it ends.
	MoveTarget string `json:"move_target,omitempty"`
	// Labels are the user's own key=value tags (not placement constraints).
	Labels map[string]string `json:"labels,omitempty"`
	// Resize is, from a resize's start until it is confirmed, reverted or
	// rolled back, what it changes. Replaced, never changed in place.
	Resize *Resize `json:"resize,omitempty"`
	// RollingBack: the operation in flight is undoing what it did.
	RollingBack bool `json:"rolling_back,omitempty"`
	// NICs are its network interfaces, allocated when it was accepted.
	NICs []NIC `json:"nics,omitempty"`
	// UserData and SSHKeys go into the guest's cloud-init seed.
	UserData string   `json:"user_data,omitempty"`
	SSHKeys  []string `json:"ssh_keys,omitempty"`
	// Guest is what the guest said about its boot since it last booted
	// (cleared whenever its domain goes down).
	Guest GuestFacts `json:"guest,omitzero"`
	// ReadyTimeout is how long its guest may boot before it is stranded.
	ReadyTimeout time.Duration `json:"ready_timeout,omitempty"`
	// DecommissionTimeout is how long a stop or delete that does not say
	// gives its guest's decommission work (zero: no decommissioning).
	DecommissionTimeout time.Duration `json:"decommission_timeout,omitempty"`
	// Decommission is where the current stop or delete is with its
	// guest's decommission work (the fsm sets it; cleared when it ends).
	Decommission lifecycle.Decommission `json:"decommission,omitempty"`
	// Project is the tenant it belongs to ("": the default project).
	Project string `json:"project,omitempty"`
	// Frozen: its project is frozen; user actions are refused until it
	// is unfrozen (log version 7).
	Frozen bool `json:"frozen,omitempty"`
	// ThawRun: the freeze paused it, so the unfreeze unpauses it.
	ThawRun bool `json:"thaw_run,omitempty"`
	// RescueImage is the image its rescue system boots while it is
	// rescued (a rescue succeeded, no unrescue since); "" otherwise.
	RescueImage string `json:"rescue_image,omitempty"`
}

// GuestFacts is what a guest said on its guest channel since it last booted.
type GuestFacts struct {
	State   lifecycle.Guest `json:"state,omitempty"`
	Stage   string          `json:"stage,omitempty"`   // its last boot step
	Reason  string          `json:"reason,omitempty"`  // why it failed, or was stranded
	Version string          `json:"version,omitempty"` // of its guest side
	Since   time.Time       `json:"since"`             // when it entered State
	Time    time.Time       `json:"time"`              // of its last report
	Side    GuestSide       `json:"side,omitzero"`
}

// GuestSide is what a guest side says of itself (log version 5).
type GuestSide struct {
	// Protocol is the guest channel protocol of its HELLO: 2 takes commands.
	Protocol uint32 `json:"protocol,omitempty"`
	// Boot is a v2 guest side's boot id: a HELLO of a boot already
	// reported is not a new boot.
	Boot      string `json:"boot,omitempty"`
	OS        string `json:"os,omitempty"`
	OSVersion string `json:"os_version,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	// Unresponsive: heard from this boot, no longer answering heartbeats.
	Unresponsive bool `json:"unresponsive,omitempty"`
}

// Readiness is whether the instance is ready for work.
func (i *Instance) Readiness() lifecycle.Readiness {
	return lifecycle.DeriveReadiness(i.Power, i.Guest.State)
}

// Resize is one resize of an instance: the shapes before and after, and
// where the original stays until the resize is confirmed or reverted.
type Resize struct {
	From Spec `json:"from"`
	To   Spec `json:"to"`
	// Source is the host the original stays on: the instance's host before
	// the resize (the same host for a resize in place).
	Source string `json:"source"`
	// WasRunning: the guest ran when the resize began (a revert starts the
	// original again, a resize starts the resized one).
	WasRunning bool `json:"was_running,omitempty"`
	// Window is how long after the resize succeeds it is confirmed by
	// itself (zero: only by the user); ConfirmBy is when, once it has.
	Window    time.Duration `json:"window,omitempty"`
	ConfirmBy time.Time     `json:"confirm_by"`
}

// SameHost reports whether the resize stays on the instance's host.
func (r *Resize) SameHost(hostID string) bool { return r.Source == hostID }

// ModelUpdate is what an update operation changes. It is applied to the
// instance when the operation succeeds, so a failed update leaves the
// model as it was.
type ModelUpdate struct {
	Name      *string           `json:"name,omitempty"`
	SetLabels bool              `json:"set_labels,omitempty"` // Labels replaces the instance's labels
	Labels    map[string]string `json:"labels,omitempty"`
	Recovery  *Recovery         `json:"recovery,omitempty"`
}

// Apply writes the update into the instance.
func (u *ModelUpdate) Apply(i *Instance) {
	if u.Name != nil {
		i.Name = *u.Name
	}
	if u.SetLabels {
		i.Labels = u.Labels
	}
	if u.Recovery != nil {
		i.Recovery = *u.Recovery
	}
}

// Recovery is what happens after an unexpected power-off or crash.
type Recovery struct {
	Policy      RecoveryPolicy `json:"policy,omitempty"`
	MaxRestarts int32          `json:"max_restarts,omitempty"`
}

// RecoveryPolicy names a recovery policy.
type RecoveryPolicy string

const (
	RecoverLeave      RecoveryPolicy = "" // show it, do nothing
	RecoverRestart    RecoveryPolicy = "restart"
	RecoverMarkFailed RecoveryPolicy = "mark-failed"
)

// Placement constrains where an instance runs.
type Placement struct {
	Kind        string            `json:"kind,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Group       string            `json:"group,omitempty"`
	Preemptible bool              `json:"preemptible,omitempty"`
	// ManagedNetworks and Bridges are what its NICs' networks need of a
	// host (set when the instance is accepted, from the networks' modes).
	ManagedNetworks bool     `json:"managed_networks,omitempty"`
	Bridges         []string `json:"bridges,omitempty"`
}

// Facts returns the instance's four facts.
func (i *Instance) Facts() lifecycle.Facts {
	return lifecycle.Facts{Desired: i.Desired, Op: i.CurrentOpK, Power: i.Power, Result: i.Result,
		Unplaced: i.HostID == "", Preemptible: i.Placement.Preemptible,
		Unconfirmed: i.Resize != nil && i.CurrentOpK != lifecycle.OpResize, RollingBack: i.RollingBack,
		Decommission: i.Decommission, Frozen: i.Frozen, Rescued: i.RescueImage != ""}
}

// Status derives the instance's status.
func (i *Instance) Status() lifecycle.Status { return lifecycle.Derive(i.Facts()) }

// OpState is where an operation is in its life.
type OpState string

const (
	OpPending   OpState = "pending"
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
	OpCanceled  OpState = "canceled"
	// OpRollingBack: undoing what the finished steps did, after a failure or a cancel.
	OpRollingBack OpState = "rolling-back"
)

// Done reports whether the state is final.
func (s OpState) Done() bool { return s == OpSucceeded || s == OpFailed || s == OpCanceled }

// Operation is one unit of work on one instance.
type Operation struct {
	ID         string           `json:"id"`
	InstanceID string           `json:"instance_id"`
	Kind       lifecycle.OpKind `json:"kind"`
	State      OpState          `json:"state"`
	Step       string           `json:"step"`
	Progress   int32            `json:"progress"`
	Fault      *Fault           `json:"fault,omitempty"`
	Deadline   time.Time        `json:"deadline"`
	CreateTime time.Time        `json:"create_time"`
	StartTime  time.Time        `json:"start_time"`
	EndTime    time.Time        `json:"end_time"`
	HostID     string           `json:"host_id"`
	HostEpoch  uint64           `json:"host_epoch"`
	RequestID  string           `json:"request_id,omitempty"`
	Revision   int64            `json:"revision"`
	Graceful   time.Duration    `json:"graceful,omitempty"`
	Force      bool             `json:"force,omitempty"`
	// PrevDesired is the instance's desired state before this operation was
	// accepted; a cancel restores it.
	PrevDesired lifecycle.Desired `json:"prev_desired,omitempty"`
	// Seq orders operations by acceptance, for newest-first listing.
	Seq int64 `json:"seq"`
	// Steps is the plan, in order; a rollback appends the undo steps.
	Steps []Step `json:"steps,omitempty"`
	// Cur is the index of the step running or to run next.
	Cur int `json:"cur,omitempty"`
	// RollingBack: a step failed or a cancel was asked for, and the undo
	// steps are running.
	RollingBack bool `json:"rolling_back,omitempty"`
	// CancelRequested: the user canceled while a step ran on its host; the
	// rollback starts when that step's result arrives.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// TargetHostID is, for a move or a resize, the host the instance goes
	// to; for a revert or a confirm, the host of the original.
	TargetHostID string `json:"target_host_id,omitempty"`
	// Token authorizes a move's disk copy between the two agents.
	Token string `json:"token,omitempty"`
	// Update is, for an update, the model it changes.
	Update *ModelUpdate `json:"update,omitempty"`
	// Resize is, for a resize, a confirm, a revert or an extend, the
	// shapes before and after.
	Resize *Resize `json:"resize,omitempty"`
	// RequestedBy is who asked for the operation, as the API saw them; nil
	// for operations the coordinator started itself (recovery, preemption).
	RequestedBy *Caller `json:"requested_by,omitempty"`
	// RequestKey scopes RequestID to its caller and kind of request
	// (RequestKeyOf); RequestHash fingerprints the request's content.
	// Both empty before log version 6: RequestID alone finds the operation.
	RequestKey  string `json:"request_key,omitempty"`
	RequestHash string `json:"request_hash,omitempty"`
	// Copy is the last progress report of a disk copy step (see RunningCopy).
	Copy *CopyProgress `json:"copy,omitempty"`
	// Decommission is, for a stop or delete, how long its guest gets to
	// run its decommission work first (zero: none).
	Decommission time.Duration `json:"decommission,omitempty"`
	// Image is a rescue's rescue image (an unrescue's, for its undo) or a
	// bundle's new image.
	Image string `json:"image,omitempty"`
	// ImageSource is, for a create whose host lacks the instance's image,
	// the host its fetch-image step pulls the image from.
	ImageSource string `json:"image_source,omitempty"`
}

// Caller is who made an API call.
type Caller struct {
	// Name and Roles are the client certificate's Common Name and
	// Organizational Units, when Authenticated.
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// Authenticated: the call came over mutual TLS with a certificate of
	// the cluster's CA. Otherwise nothing about the caller was verified.
	Authenticated bool `json:"authenticated,omitempty"`
	// Address is where the call came from (the client's, not a relaying
	// follower's).
	Address string `json:"address,omitempty"`
}

// String is how logs and the CLI show a caller: "alice (operator)", or
// "unauthenticated 10.0.0.7:51234".
func (c *Caller) String() string {
	switch {
	case c == nil:
		return ""
	case !c.Authenticated:
		return "unauthenticated " + c.Address
	case len(c.Roles) > 0:
		return c.Name + " (" + strings.Join(c.Roles, ",") + ")"
	}
	return c.Name
}

// StepState is where one step of an operation is.
type StepState string

const (
	StepPending     StepState = "pending"
	StepRunning     StepState = "running"
	StepRetryWait   StepState = "retry-wait"
	StepSucceeded   StepState = "succeeded"
	StepFailed      StepState = "failed"
	StepSkipped     StepState = "skipped"
	StepCompensated StepState = "compensated"
)

// Step is one step of an operation, as recorded.
type Step struct {
	Name   string               `json:"name"`
	Action lifecycle.StepAction `json:"action"`
	// OnTarget: runs on the operation's TargetHostID, else on its HostID
	// (or, for an action not OnHost, on the coordinator).
	OnTarget bool      `json:"on_target,omitempty"`
	State    StepState `json:"state"`
	// Attempt is the attempt running or last run, from 1.
	Attempt     int32         `json:"attempt,omitempty"`
	MaxAttempts int32         `json:"max_attempts"`
	Force       bool          `json:"force,omitempty"`
	Deadline    time.Time     `json:"deadline"`
	StartTime   time.Time     `json:"start_time"`
	EndTime     time.Time     `json:"end_time"`
	RetryTime   time.Time     `json:"retry_time"`
	HostEpoch   uint64        `json:"host_epoch,omitempty"`
	Fault       *Fault        `json:"fault,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	// Undo is the step that reverses this one (nil: nothing to undo, or
	// irreversible, per Irreversible).
	Undo         *Step `json:"undo,omitempty"`
	Irreversible bool  `json:"irreversible,omitempty"`
	// Layer is, for an offer or a receive, the part of the disk it copies.
	Layer lifecycle.Layer `json:"layer,omitempty"`
	// Undoes is, for an undo step, the index of the step it reverses.
	Undoes int  `json:"undoes,omitempty"`
	IsUndo bool `json:"is_undo,omitempty"`
	// Note is what a step that succeeded did not do (a decommission the
	// guest had no guest side for).
	Note string `json:"note,omitempty"`
}

// StepID is the identity the agent runs a step attempt under, at most once.
func (o *Operation) StepID(i int, attempt int32) string {
	return fmt.Sprintf("%s/%d/%d", o.ID, i, attempt)
}

// StepHost returns the host step s runs on ("" for the coordinator's own).
func (o *Operation) StepHost(s *Step) string {
	switch {
	case !s.Action.OnHost():
		return ""
	case s.OnTarget:
		return o.TargetHostID
	}
	return o.HostID
}

// Current returns the step running or to run next, or nil when none is left.
func (o *Operation) Current() *Step {
	if o.Cur < 0 || o.Cur >= len(o.Steps) {
		return nil
	}
	return &o.Steps[o.Cur]
}

// HostStatus is the liveness of a host's agent.
type HostStatus string

const (
	HostReady        HostStatus = "ready"
	HostDisconnected HostStatus = "disconnected" // the stream closed
	HostDown         HostStatus = "down"         // heartbeats missed, or absent after a leader change
)

// Host is one hypervisor host.
type Host struct {
	ID           string            `json:"id"`
	Status       HostStatus        `json:"status"`
	Kind         string            `json:"kind"`
	Capacity     Resources         `json:"capacity"`
	Epoch        uint64            `json:"epoch"`
	RegisterTime time.Time         `json:"register_time"`
	AgentVersion string            `json:"agent_version"`
	Orphans      []string          `json:"orphans,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Cordoned     bool              `json:"cordoned,omitempty"`
	Draining     bool              `json:"draining,omitempty"`
	ModifyRev    int64             `json:"modify_rev"`
	// PeerAddr is where the agent serves other agents (disk copies of moves).
	PeerAddr string `json:"peer_addr,omitempty"`
	// ManagedNetworks: the host creates NAT and isolated networks itself;
	// Bridges are the host bridges it has (bridge networks).
	ManagedNetworks bool     `json:"managed_networks,omitempty"`
	Bridges         []string `json:"bridges,omitempty"`
	// ClockSkew is the agent's clock minus the coordinator's, as last
	// measured (at ClockMeasured; zero time: never).
	ClockSkew     time.Duration `json:"clock_skew,omitempty"`
	ClockMeasured time.Time     `json:"clock_measured,omitzero"`
	// ImagesListed: the host's agent lists its images (it is of the image
	// catalogue, and can fetch an image it lacks); an older agent never
	// says, and no fetch is planned for it.
	ImagesListed bool `json:"images_listed,omitempty"`
}

// Resources is an amount of vCPU, memory and disk.
type Resources struct {
	VCPUs     uint32 `json:"vcpus"`
	MemoryMiB uint64 `json:"memory_mib"`
	DiskGiB   uint64 `json:"disk_gib"`
}

// Event is one change to an instance, as watchers see it.
type Event struct {
	Revision int64
	Instance Instance
}

// Server is one coordinator of the cluster, as the registry knows it; the
// Raft configuration is the truth about membership, this adds API addresses.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// RequestKeyOf is the key that finds the operation a request produced:
// its scoped key, or its bare request id before log version 6.
func RequestKeyOf(o *Operation) string {
	if o.RequestKey != "" {
		return o.RequestKey
	}
	return o.RequestID
}
