package fsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Command is one Raft log entry.
type Command struct {
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Body json.RawMessage `json:"body"`
}

// Encode builds the log entry for a command body.
func Encode(typ string, now time.Time, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return json.Marshal(Command{Type: typ, Time: now.UTC(), Body: b})
}

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
	ctx, cancel := context.WithTimeout(ctx, ProposeTimeout)
	defer cancel()
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
	// TypeBatch carries several encoded commands in one log entry (one
	// fsync for many small reports); each applies on its own, in order.
	TypeBatch = "batch"
)

// Batch is the body of a TypeBatch entry.
type Batch struct {
	Commands []json.RawMessage `json:"commands"`
}

// EncodeBatch builds one log entry from encoded commands.
func EncodeBatch(now time.Time, cmds [][]byte) ([]byte, error) {
	b := Batch{Commands: make([]json.RawMessage, len(cmds))}
	for i, c := range cmds {
		b.Commands[i] = c
	}
	return Encode(TypeBatch, now, b)
}

// Business errors returned as apply results. The API maps them to gRPC codes.
var (
	ErrNotFound        = state.ErrNotFound
	ErrNotAllowed      = lifecycle.ErrNotAllowed
	ErrHostUnavailable = errors.New("host unavailable")
	ErrNoCapacity      = errors.New("not enough capacity")
	ErrOperationDone   = errors.New("operation already finished")
	ErrNotCancellable  = errors.New("operation is not cancellable")
	ErrStaleEpoch      = errors.New("stale host epoch")
	ErrAlreadyExists   = errors.New("already exists")
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
	Action    lifecycle.Action `json:"action"`
	Hard      bool             `json:"hard,omitempty"`
	Operation state.Operation  `json:"operation"` // ID, InstanceID, Deadline, RequestID, Graceful, Force
}

// Dispatch records that operations' steps are being sent to their hosts:
// one entry for all the steps the leader sends at once.
type Dispatch struct {
	Steps []DispatchStep `json:"steps"`
}

// DispatchStep is one step sent under a host session's epoch.
type DispatchStep struct {
	OperationID string `json:"operation_id"`
	HostEpoch   uint64 `json:"host_epoch"`
}

// Finish ends an operation.
type Finish struct {
	OperationID string       `json:"operation_id"`
	Succeeded   bool         `json:"succeeded"`
	Fault       *state.Fault `json:"fault,omitempty"`
	// Observed is the domain's state after the step, when the host said.
	Observed *Observation `json:"observed,omitempty"`
	HostID   string       `json:"host_id,omitempty"`
}

// Cancel cancels an operation that has not been sent to its host.
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

// DrainHost cordons a host and stops its instances: Stops holds one
// prepared stop operation per instance; those an instance's status no
// longer allows at commit time are skipped.
type DrainHost struct {
	HostID string            `json:"host_id"`
	Stops  []state.Operation `json:"stops"`
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
