package fsm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Proposer commits an encoded command through the replicated log and
// returns its apply result.
type Proposer interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// ProposeTimeout bounds a proposal whose context allows longer.
const ProposeTimeout = 10 * time.Second

// Propose encodes a command stamped now and commits it.
func Propose(ctx context.Context, p Proposer, typ string, now time.Time, body any) (any, error) {
	cmd, err := Encode(typ, now, body)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > ProposeTimeout {
		// (A context that ends sooner is used as is: one more context and
		// timer per write showed in the write path's profile.)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ProposeTimeout)
		defer cancel()
	}
	return p.Apply(ctx, cmd)
}

// Command types.
const (
	TypeCreateInstance = "instance.create"
	TypeInstanceAction = "instance.action"
	TypeDispatch       = "operation.dispatch"
	TypeFinish         = "operation.finish"
	TypeCancel         = "operation.cancel"
	TypeRegisterHost   = "host.register"
	TypeDisconnectHost = "host.disconnect"
	TypeObserve        = "power.observe"
	TypeRegisterServer = "server.register"
	TypeRemoveServer   = "server.remove"
	TypeCordonHost     = "host.cordon"
	TypeDrainHost      = "host.drain"
	TypeRecover        = "instance.recover"
	TypePlace          = "instance.place"
	TypePreempt        = "instance.preempt"
	TypePrune          = "history.prune"
	TypeStartUsage     = "usage.start"
	// TypeBatch carries several encoded commands in one log entry (one
	// fsync for many small reports); each applies on its own, in order.
	TypeBatch = "batch"
)

// Business errors returned as apply results. The API maps them to gRPC codes.
var (
	ErrNotFound        = state.ErrNotFound
	ErrNotAllowed      = lifecycle.ErrNotAllowed
	ErrHostUnavailable = errors.New("host unavailable")
	ErrNoCapacity      = errors.New("not enough capacity")
	ErrOperationDone   = errors.New("operation already finished")
	ErrNotCancellable  = errors.New("operation is not cancellable")
	ErrStaleEpoch      = errors.New("stale host epoch")
	ErrStaleStep       = errors.New("not the operation's current step attempt")
	ErrWrongHost       = errors.New("the step runs on another host")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalid         = errors.New("invalid command")
)

// Observation is one power-state report from a host.
type Observation struct {
	InstanceID string          `json:"instance_id"`
	Power      lifecycle.Power `json:"power"`
	Reason     string          `json:"reason,omitempty"`
	Time       time.Time       `json:"time"`
}

// CreateInstance accepts a new instance and its create operation.
type CreateInstance struct {
	Instance  state.Instance  `json:"instance"`
	Operation state.Operation `json:"operation"`
	// Policy is the leader's placement policy, carried so every replica
	// checks the placement the same way.
	Policy scheduler.Policy `json:"policy"`
}

// InstanceAction accepts a user action and the operation that carries it out.
type InstanceAction struct {
	Action lifecycle.Action `json:"action"`
	Hard   bool             `json:"hard,omitempty"`
	// Operation: ID, InstanceID, Deadline, RequestID, Graceful, Force; for
	// a move or a resize, the target and token the leader chose (a resize
	// without a target stays on its host), and for a resize or an extend,
	// Resize.To and Resize.Window.
	Operation state.Operation `json:"operation"`
	// Policy is the placement policy the target is checked against.
	Policy scheduler.Policy `json:"policy,omitempty"`
	// Retain: a delete keeps the instance soft-deleted for the cluster's
	// retention window (unless Operation.Force).
	Retain bool `json:"retain,omitempty"`
	// ReclaimBefore, set, makes the delete the reclaim of a soft-deleted
	// instance whose soft delete ended at or before it (the leader's clock
	// minus the window); anything else is refused, so a late or repeated
	// reclaim changes nothing.
	ReclaimBefore time.Time `json:"reclaim_before,omitempty"`
}

// Dispatch records that operations' steps are being sent to their hosts:
// one entry for all the steps the leader sends at once.
type Dispatch struct {
	Steps []DispatchStep `json:"steps"`
}

// DispatchStep is one step attempt sent under a host session's epoch.
type DispatchStep struct {
	OperationID string `json:"operation_id"`
	StepID      string `json:"step_id"`
	HostEpoch   uint64 `json:"host_epoch"`
}

// Finish reports how a step attempt ended (StepID; empty means the
// current step, from an agent that does not send step ids), or, with
// Abort, ends the whole operation at once (its deadline passed).
type Finish struct {
	OperationID string       `json:"operation_id"`
	StepID      string       `json:"step_id,omitempty"`
	Abort       bool         `json:"abort,omitempty"`
	Succeeded   bool         `json:"succeeded"`
	Fault       *state.Fault `json:"fault,omitempty"`
	// Observed is the domain's state after the step, when the host said.
	Observed *Observation `json:"observed,omitempty"`
	// HostID is the reporting host: only the step's own host may report it.
	HostID string `json:"host_id,omitempty"`
	// Note is what a successful step did not do (see state.Step.Note).
	Note string `json:"note,omitempty"`
}

// Cancel cancels an operation: at once if no step of it is on a host,
// else by rolling back once the running step ends.
type Cancel struct {
	OperationID string `json:"operation_id"`
}

// RegisterHost records an agent's (re)registration and its full inventory.
type RegisterHost struct {
	Host      state.Host    `json:"host"`
	Inventory []Observation `json:"inventory"`
}

// DisconnectHost records that a host's session ended (Down: because it
// went silent or never came back, rather than a closed stream).
type DisconnectHost struct {
	HostID string `json:"host_id"`
	Epoch  uint64 `json:"epoch"`
	Down   bool   `json:"down,omitempty"`
}

// CordonHost sets or clears a host's cordon (clearing also ends a drain).
type CordonHost struct {
	HostID string `json:"host_id"`
	Cordon bool   `json:"cordon"`
}

// DrainHost cordons a host and empties it: Stops holds prepared stop
// operations, Moves prepared moves (TargetHostID and Token set) for the
// instances the leader found room for elsewhere. Those an instance's status
// no longer allows at commit time are skipped; a move whose target no longer
// fits falls back to a stop.
type DrainHost struct {
	HostID string            `json:"host_id"`
	Stops  []state.Operation `json:"stops"`
	Moves  []state.Operation `json:"moves,omitempty"`
	// Policy is the leader's placement policy, to re-check the moves' targets.
	Policy scheduler.Policy `json:"policy"`
}

// Recover acts on an unexpected power-off or crash per the instance's
// recovery policy: Restart carries the start operation; otherwise the
// instance is marked failed.
type Recover struct {
	InstanceID string           `json:"instance_id"`
	Restart    *state.Operation `json:"restart,omitempty"`
}

// Observe records power-state reports of one host. Full means the list is
// the host's whole inventory: placed instances missing from it have no domain.
type Observe struct {
	HostID string `json:"host_id"`
	Epoch  uint64 `json:"epoch"`
	Full   bool   `json:"full,omitempty"`
	// Taken is when a full inventory was listed; absences are dated by it,
	// so a listing that raced with a create cannot erase the new domain.
	Taken        time.Time     `json:"taken,omitempty"`
	Observations []Observation `json:"observations"`
}

// RegisterServer records a coordinator's addresses.
type RegisterServer struct {
	Server state.Server `json:"server"`
}

// RemoveServer forgets a coordinator.
type RemoveServer struct {
	ID string `json:"id"`
}

// Place puts a waiting instance on a host and starts its create's clock.
type Place struct {
	InstanceID string           `json:"instance_id"`
	HostID     string           `json:"host_id"`
	Deadline   time.Time        `json:"deadline"`
	Policy     scheduler.Policy `json:"policy"`
}

// Preempt evicts preemptible instances to make room for a waiting one;
// each victim gets an operation that removes its domain, after which it
// waits for capacity again.
type Preempt struct {
	For     string            `json:"for"` // the waiting instance that needs the room
	Victims []state.Operation `json:"victims"`
}

// StartUsage turns usage recording on (once, for good): a leader proposes
// it when it finds it off. Every instance's history begins at this entry.
type StartUsage struct{}

// Prune removes deleted instances, with their operations and usage, whose
// retention has passed: those of InstanceIDs still DELETED whose record
// last changed at or before Before. The leader chooses the cut-off from
// its clock and the retention setting; carried in the entry, it is the
// same on every replica, which never consult their own clocks for it.
type Prune struct {
	Before      time.Time `json:"before"`
	InstanceIDs []string  `json:"instance_ids"`
}

// TypeSetLogVersion raises the cluster's log version (see logformat.go).
const TypeSetLogVersion = "cluster.log_version"

// SetLogVersion is the body of a TypeSetLogVersion entry.
type SetLogVersion struct {
	Version uint32 `json:"version"`
}

// applySetLogVersion raises the log version; it is never lowered. A
// version this server does not know stops it: it would misread what follows.
func applySetLogVersion(tx *state.Tx, c *SetLogVersion) (any, error) {
	if c.Version > SupportedLogVersion {
		panic(fmt.Sprintf("fsm: the cluster moved to log version %d; this server reads up to %d: upgrade it", c.Version, SupportedLogVersion))
	}
	if c.Version <= tx.LogVersion() {
		return tx.LogVersion(), nil
	}
	tx.SetLogVersion(c.Version)
	return c.Version, nil
}
