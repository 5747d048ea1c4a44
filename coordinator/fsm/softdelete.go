package fsm

import (
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// restoredDesired is what a restore brings back: the desired state the
// instance had when its soft delete was accepted (kept on that operation).
func restoredDesired(tx *state.Tx, inst *state.Instance) lifecycle.Desired {
	var before lifecycle.Desired
	if op, ok := tx.Operation(inst.LastOp); ok && op.Kind == lifecycle.OpSoftDelete {
		before = op.PrevDesired
	}
	return lifecycle.RestoredDesired(before)
}

// checkReclaim accepts the retention loop's reclaim only of an instance
// still soft-deleted whose soft delete ended at or before the cut-off the
// leader chose: a restore, or a new soft delete, in between wins.
func checkReclaim(tx *state.Tx, inst *state.Instance, status lifecycle.Status, before time.Time) error {
	if status != lifecycle.StatusSoftDeleted {
		return fmt.Errorf("instance %q is %s, not soft-deleted: %w", inst.ID, status, ErrNotAllowed)
	}
	op, ok := tx.Operation(inst.LastOp)
	if !ok || op.Kind != lifecycle.OpSoftDelete || op.EndTime.After(before) {
		return fmt.Errorf("instance %q: its retention window has not passed: %w", inst.ID, ErrNotAllowed)
	}
	return nil
}
