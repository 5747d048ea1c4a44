package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// prepareReallocation plans the start of a deallocated instance: it holds
// no room anywhere, so it is placed again as a create is, checked at
// commit time. On the host that kept its disk when it fits there (the
// request names no other host); else on the request's target, with the
// disk copied there first (a token, as for a move).
func prepareReallocation(tx *state.Tx, inst *state.Instance, op *state.Operation, req *state.Operation, policy scheduler.Policy) (lifecycle.Shape, error) {
	sh := lifecycle.Shape{Deallocated: true, StartAfter: true}
	if req.TargetHostID == "" || req.TargetHostID == inst.HostID {
		if err := checkPlacement(tx, inst, inst.HostID, policy); err != nil {
			return sh, err
		}
		sh.SameHost = true
		return sh, nil
	}
	if req.Token == "" {
		return sh, fmt.Errorf("a start on another host than the disk's needs a token: %w", ErrInvalid)
	}
	if err := checkPlacement(tx, inst, req.TargetHostID, policy); err != nil {
		return sh, err
	}
	op.TargetHostID, op.Token = req.TargetHostID, req.Token
	inst.MoveTarget = req.TargetHostID
	return sh, nil
}
