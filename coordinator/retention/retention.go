// Package retention removes, on the leader, the records of deleted
// instances once a retention period has passed since their deletion: the
// instance, its operations (its action history) and its usage. Removal
// goes through the log (fsm.TypePrune) with a cut-off the leader chose,
// so every replica removes the same records at the same revision; no
// replica ever prunes by its own clock.
package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Applier commits an encoded command.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Batch bounds the instances one prune entry removes.
const Batch = 1000

// Interval is how often the leader looks for expired records: a tenth of
// the retention, between a second and a minute (a record outlives its
// retention by at most that).
func Interval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Minute)
}

// Run prunes expired records until ctx ends; call it only while leader. A
// retention of 0 or less keeps everything.
func Run(ctx context.Context, store *state.Store, applier Applier, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	tick := time.NewTicker(Interval(retention))
	defer tick.Stop()
	for {
		for ctx.Err() == nil && pruneOnce(ctx, store, applier, retention, log) == Batch {
			// A full batch: more may be waiting.
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneOnce proposes the removal of up to Batch expired instances and
// returns how many were removed.
func pruneOnce(ctx context.Context, store *state.Store, applier Applier, retention time.Duration, log *slog.Logger) int {
	now := time.Now()
	cmd := fsm.Prune{Before: now.Add(-retention)}
	cmd.InstanceIDs = store.DeletedBefore(cmd.Before, Batch)
	if len(cmd.InstanceIDs) == 0 {
		return 0
	}
	res, err := fsm.Propose(ctx, applier, fsm.TypePrune, now, cmd)
	if err != nil {
		log.Warn("pruning deleted instances failed", "err", err, "candidates", len(cmd.InstanceIDs))
		return 0
	}
	removed, _ := res.([]string)
	for _, id := range removed {
		log.Info("removed a deleted instance's records: retention passed", "instance", id, "deleted_before", cmd.Before, "retention", retention)
	}
	return len(removed)
}
