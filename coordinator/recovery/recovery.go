// Package recovery acts, on the leader, on instances whose guest powered off
// or crashed without anyone asking: per the instance's policy it restarts
// them with exponential back-off up to a limit, marks them failed, or leaves
// them showing the unexpected state. The decision is a pure function; the
// loop around it only proposes commands, which the FSM re-checks.
package recovery

import (
	"context"
	"log/slog"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Action is what to do for one instance now.
type Action int

const (
	None Action = iota
	Restart
	MarkFailed
)

// Back-off between automatic restarts: BaseDelay after the first stop,
// doubling with each restart already done, at most MaxDelay.
const (
	BaseDelay = time.Second
	MaxDelay  = 5 * time.Minute
)

// Delay is how long after the unexpected stop the n-th restart (0-based) waits.
func Delay(restartsDone int32) time.Duration {
	d := BaseDelay
	for i := int32(0); i < restartsDone && d < MaxDelay; i++ {
		d *= 2
	}
	return min(d, MaxDelay)
}

// Decide returns the action for inst at now, and, for a restart that is
// not due yet, how long until it is.
func Decide(inst state.Instance, now time.Time) (Action, time.Duration) {
	if inst.CurrentOp != "" {
		return None, 0
	}
	if s := inst.Status(); s != lifecycle.StatusUnexpectedShutoff && s != lifecycle.StatusCrashed {
		return None, 0
	}
	switch inst.Recovery.Policy {
	case state.RecoverMarkFailed:
		return MarkFailed, 0
	case state.RecoverRestart:
		if inst.Restarts >= inst.Recovery.MaxRestarts {
			return None, 0 // out of restarts: the unexpected state stays visible
		}
		due := inst.PowerTime.Add(Delay(inst.Restarts))
		if now.Before(due) {
			return None, due.Sub(now)
		}
		return Restart, 0
	}
	return None, 0
}

// Applier commits an encoded command.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// StartDeadline bounds an automatic restart like a user's start.
const StartDeadline = 3 * time.Minute

// Run acts on instances until ctx ends. Call it only while leader.
func Run(ctx context.Context, store *state.Store, applier Applier, log *slog.Logger) {
	store.EachChange(ctx, coalesce, func(now time.Time) time.Duration {
		next := time.Minute
		type due struct {
			inst state.Instance
			act  Action
		}
		var todo []due
		store.EachStoppedUnexpectedly(func(i *state.Instance) {
			act, wait := Decide(*i, now)
			if wait > 0 && wait < next {
				next = wait
			}
			if act != None {
				todo = append(todo, due{*i, act})
			}
		})
		for _, d := range todo {
			inst, act := d.inst, d.act
			if ctx.Err() != nil {
				return next
			}
			cmd := fsm.Recover{InstanceID: inst.ID}
			if act == Restart {
				cmd.Restart = &state.Operation{ID: ids.New("op-"), InstanceID: inst.ID, Deadline: now.Add(StartDeadline)}
			}
			_, err := fsm.Propose(ctx, applier, fsm.TypeRecover, now, cmd)
			l := log.With("instance", inst.ID, "host", inst.HostID, "policy", inst.Recovery.Policy, "restarts", inst.Restarts)
			if err != nil {
				l.Warn("recovery action refused or failed", "err", err)
				continue
			}
			if act == Restart {
				l.Info("restarting a guest that stopped on its own", "power", inst.Power, "reason", inst.PowerWhy, "operation", cmd.Restart.ID)
			} else {
				l.Warn("guest stopped on its own; marked failed", "power", inst.Power, "reason", inst.PowerWhy)
			}
		}
		return next
	})
}

// coalesce is the least time between two scans triggered by commits.
const coalesce = 200 * time.Millisecond
