package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Reclaim deletes, on the leader, the soft-deleted instances whose
// retention window has passed, until ctx ends; call it only while leader.
// A window of 0 or less means nothing is ever soft-deleted.
func Reclaim(ctx context.Context, store *state.Store, applier Applier, window time.Duration, log *slog.Logger) {
	if window <= 0 {
		return
	}
	tick := time.NewTicker(Interval(window))
	defer tick.Stop()
	for {
		ReclaimOnce(ctx, store, applier, window, time.Now(), log)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ReclaimOnce proposes the reclaim of every instance soft-deleted at or
// before now minus the window, and returns the operations started. The
// FSM checks each again against the cut-off, so a restore that came first
// wins and a repeated proposal changes nothing.
func ReclaimOnce(ctx context.Context, store *state.Store, applier Applier, window time.Duration, now time.Time, log *slog.Logger) []string {
	cutoff := now.Add(-window)
	var due []string
	store.EachInstance(func(i *state.Instance) {
		if i.Status() == lifecycle.StatusSoftDeleted {
			due = append(due, i.ID)
		}
	})
	var started []string
	for _, id := range due {
		inst, err := store.Instance(id)
		if err != nil {
			continue
		}
		if op, err := store.Operation(inst.LastOp); err != nil || op.EndTime.After(cutoff) {
			continue
		}
		cmd := fsm.InstanceAction{Action: lifecycle.ActionDelete, ReclaimBefore: cutoff, Operation: state.Operation{
			ID: ids.New("op-"), InstanceID: id, Force: true,
			Deadline: now.Add(lifecycle.DefaultDeadlines[lifecycle.OpDelete])}}
		if _, err := fsm.Propose(ctx, applier, fsm.TypeInstanceAction, now, cmd); err != nil {
			log.Warn("reclaiming a soft-deleted instance failed", "instance", id, "err", err)
			continue
		}
		log.Info("reclaiming a soft-deleted instance: retention window passed", "instance", id, "operation", cmd.Operation.ID, "window", window)
		started = append(started, cmd.Operation.ID)
	}
	return started
}
