// Package orchestrator drives operations on the leader: it sends each open
// operation's step to its host's agent (once per agent session: the agent
// runs an operation at most once and answers a re-sent step with the result
// it kept), and ends every operation whose deadline has passed, so no
// instance stays in a transitional status forever.
package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/api"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Sessions is the orchestrator's view of live agent sessions.
type Sessions interface {
	Epoch(hostID string) (uint64, bool)
	Send(hostID string, step *agentv1.RunStep) error
	Changed() <-chan struct{}
}

// Applier commits an encoded command through the replicated log.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Config configures the orchestrator.
type Config struct {
	Store    *state.Store
	Applier  Applier
	Sessions Sessions
	Logger   *slog.Logger
	Now      func() time.Time
	// Grace is how long past an operation's deadline the coordinator waits
	// for the agent's own verdict before ending it as DEADLINE_EXCEEDED.
	Grace time.Duration
	Tick  time.Duration
	// Policy places waiting instances, as the API places new ones.
	Policy scheduler.Policy
}

// Orchestrator is the leader's operation driver.
type Orchestrator struct {
	cfg  Config
	log  *slog.Logger
	sent map[string]uint64 // operation id -> session epoch it was sent on
	// evicting maps a waiting instance to the evictions started for it, so
	// it does not evict again while they run.
	evicting map[string][]string
}

// New returns an orchestrator.
func New(cfg Config) *Orchestrator {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.Tick == 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	return &Orchestrator{cfg: cfg, log: cfg.Logger}
}

// Run drives operations until ctx ends. Call it only while leader.
func (o *Orchestrator) Run(ctx context.Context) {
	o.sent = map[string]uint64{}
	o.evicting = map[string][]string{}
	t := time.NewTicker(o.cfg.Tick)
	defer t.Stop()
	for {
		stateChanged, sessionsChanged := o.cfg.Store.Changed(), o.cfg.Sessions.Changed()
		o.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-stateChanged:
		case <-sessionsChanged:
		case <-t.C:
		}
		// Coalesce a burst of commits into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(passGap):
		}
	}
}

// passGap is the least time between two passes: a burst of commits is
// served by one pass (and one dispatch entry) rather than one each.
const passGap = 10 * time.Millisecond

func (o *Orchestrator) pass(ctx context.Context) {
	now := o.cfg.Now()
	open := o.cfg.Store.OpenOperations()
	o.place(ctx, open, now)
	live := make(map[string]bool, len(open))
	var batch fsm.Dispatch
	ready := map[string]state.Operation{}
	for _, op := range open {
		live[op.ID] = true
		if op.HostID == "" || ctx.Err() != nil {
			continue // waiting for capacity: the placement pass handles it
		}
		if !op.Deadline.IsZero() && now.After(op.Deadline.Add(o.cfg.Grace)) {
			o.expire(ctx, op, o.log.With("operation", op.ID, "instance", op.InstanceID, "host", op.HostID))
			continue
		}
		epoch, ok := o.cfg.Sessions.Epoch(op.HostID)
		if !ok || o.sent[op.ID] == epoch {
			continue
		}
		batch.Steps = append(batch.Steps, fsm.DispatchStep{OperationID: op.ID, HostEpoch: epoch})
		ready[op.ID] = op
	}
	for id := range o.sent {
		if !live[id] {
			delete(o.sent, id)
		}
	}
	if len(batch.Steps) == 0 {
		return
	}
	// Record every step as running in one entry, then send them.
	v, err := o.applyValue(ctx, fsm.TypeDispatch, batch)
	if err != nil {
		o.log.Warn("dispatch failed; will retry", "steps", len(batch.Steps), "err", err)
		return
	}
	sent, _ := v.([]string)
	epochs := make(map[string]uint64, len(batch.Steps))
	for _, d := range batch.Steps {
		epochs[d.OperationID] = d.HostEpoch
	}
	for _, id := range sent {
		op := ready[id]
		log := o.log.With("operation", op.ID, "instance", op.InstanceID, "host", op.HostID)
		if err := o.send(op); err != nil {
			log.Warn("send failed; will retry", "err", err)
			continue
		}
		o.sent[id] = epochs[id]
		log.Info("step sent", "kind", op.Kind, "epoch", epochs[id])
	}
}

// send gives one recorded step to its host's session.
func (o *Orchestrator) send(op state.Operation) error {
	inst, err := o.cfg.Store.Instance(op.InstanceID)
	if err != nil {
		return err
	}
	kind := api.OpKindToPB(op.Kind)
	if op.Kind == lifecycle.OpPreempt {
		kind = pb.OperationKind_OPERATION_KIND_DELETE // on the host, an eviction removes the domain
	}
	step := &agentv1.RunStep{
		OperationId: op.ID, InstanceId: op.InstanceID, Kind: kind,
		Name: inst.Name, Spec: api.SpecToPB(inst.Spec), Force: op.Force, Deadline: timestamppb.New(op.Deadline),
	}
	if op.Graceful > 0 {
		step.GracefulTimeout = durationpb.New(op.Graceful)
	}
	return o.cfg.Sessions.Send(op.HostID, step)
}

func (o *Orchestrator) expire(ctx context.Context, op state.Operation, log *slog.Logger) {
	msg := "the operation did not finish by its deadline"
	if _, ok := o.cfg.Sessions.Epoch(op.HostID); !ok {
		msg += "; its host has no live agent session"
	}
	f := fsm.Finish{OperationID: op.ID, Fault: &state.Fault{Code: "DEADLINE_EXCEEDED", Message: msg, Time: o.cfg.Now(), HostID: op.HostID}}
	if err := o.apply(ctx, fsm.TypeFinish, f); err != nil && !errors.Is(err, fsm.ErrOperationDone) {
		log.Warn("ending expired operation failed", "err", err)
		return
	}
	log.Warn("operation ended at its deadline", "deadline", op.Deadline)
}

func (o *Orchestrator) apply(ctx context.Context, typ string, body any) error {
	_, err := o.applyValue(ctx, typ, body)
	return err
}
