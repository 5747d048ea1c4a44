package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// The operations that change where an instance lives or what shape it has
// (resize, its confirm and revert, extend, move) are accepted here: the
// leader proposes a target and the shapes; every replica checks them again
// against the state at commit time, as it does a placement.

// prepareReshaping fills in op (already made for the accepted action) for
// the shape- and place-changing kinds, checks what the request asks for,
// and records on inst what the operation holds (room on a target, the
// resize). It returns the plan's shape.
func prepareReshaping(tx *state.Tx, inst *state.Instance, op *state.Operation, req *state.Operation, status lifecycle.Status, policy scheduler.Policy) (lifecycle.Shape, error) {
	running := status == lifecycle.StatusRunning
	sh := lifecycle.Shape{WasRunning: running, StartAfter: running}
	switch op.Kind {
	case lifecycle.OpMove:
		if req.TargetHostID == "" || req.TargetHostID == inst.HostID || req.Token == "" {
			return sh, fmt.Errorf("a move needs another host to go to and a token: %w", ErrInvalid)
		}
		if err := checkPlacement(tx, inst, req.TargetHostID, policy); err != nil {
			return sh, err
		}
		op.TargetHostID, op.Token = req.TargetHostID, req.Token
		inst.MoveTarget = req.TargetHostID
	case lifecycle.OpResize:
		r := req.Resize
		if r == nil {
			return sh, fmt.Errorf("a resize needs its new shape: %w", ErrInvalid)
		}
		if err := checkNewShape(inst.Spec, r.To, false); err != nil {
			return sh, err
		}
		rs := &state.Resize{From: inst.Spec, To: r.To, Source: inst.HostID, WasRunning: running, Window: r.Window}
		sh.SameHost = req.TargetHostID == "" || req.TargetHostID == inst.HostID
		if sh.SameHost {
			if err := fitsInPlace(tx, inst, r.To, policy); err != nil {
				return sh, err
			}
		} else {
			if req.Token == "" {
				return sh, fmt.Errorf("a resize to another host needs a token: %w", ErrInvalid)
			}
			moved := *inst
			moved.Spec = r.To
			if err := checkPlacement(tx, &moved, req.TargetHostID, policy); err != nil {
				return sh, err
			}
			op.TargetHostID, op.Token = req.TargetHostID, req.Token
			inst.MoveTarget = req.TargetHostID
		}
		op.Resize, inst.Resize = rs, rs
	case lifecycle.OpExtend:
		r := req.Resize
		if r == nil {
			return sh, fmt.Errorf("an extend needs its new disk size: %w", ErrInvalid)
		}
		if err := checkNewShape(inst.Spec, r.To, true); err != nil {
			return sh, err
		}
		if err := fitsInPlace(tx, inst, r.To, policy); err != nil {
			return sh, err
		}
		op.Resize = &state.Resize{From: inst.Spec, To: r.To, Source: inst.HostID, WasRunning: running}
	case lifecycle.OpRebuild, lifecycle.OpRescue, lifecycle.OpUnrescue, lifecycle.OpBundle:
		return prepareImaging(inst, op, req, status)
	case lifecycle.OpUpgrade:
		r := req.Resize
		if r == nil {
			return sh, fmt.Errorf("an upgrade needs its new image version or model: %w", ErrInvalid)
		}
		if err := checkUpgrade(inst.Spec, r.To); err != nil {
			return sh, err
		}
		if err := fitsInPlace(tx, inst, r.To, policy); err != nil {
			return sh, err
		}
		// Window is, for an upgrade, how long its guest has to become healthy.
		op.Resize = &state.Resize{From: inst.Spec, To: r.To, Source: inst.HostID, WasRunning: running, Window: r.Window}
		sh.Health = r.Window
	case lifecycle.OpConfirmResize, lifecycle.OpRevertResize:
		r := inst.Resize
		if r == nil {
			return sh, fmt.Errorf("instance %q has no resize to confirm or revert: %w", inst.ID, ErrNotAllowed)
		}
		op.Resize = r
		sh.SameHost = r.SameHost(inst.HostID)
		sh.WasRunning, sh.StartAfter = inst.Power == lifecycle.PowerRunning, r.WasRunning
		if !sh.SameHost {
			op.TargetHostID = r.Source // the original's host
		}
	}
	return sh, nil
}

// checkNewShape refuses a new shape that is not one: the same as now, a
// smaller disk (it would cut off the guest's file systems), another image;
// an extend changes only the disk.
func checkNewShape(from, to state.Spec, extend bool) error {
	switch {
	case to.Image != from.Image:
		return fmt.Errorf("the image cannot change with the shape: %w", ErrInvalid)
	case to.DiskGiB != 0 && to.DiskGiB < from.DiskGiB, to.DiskGiB == 0 && from.DiskGiB != 0:
		return fmt.Errorf("the disk can only grow (%d GiB now): %w", from.DiskGiB, ErrInvalid)
	case to == from:
		return fmt.Errorf("the instance has that shape already: %w", ErrInvalid)
	case extend && (to.VCPUs != from.VCPUs || to.MemoryMiB != from.MemoryMiB):
		return fmt.Errorf("an extend grows the disk only; vCPUs and memory change by a resize: %w", ErrInvalid)
	}
	return nil
}

// checkUpgrade refuses an upgrade that changes nothing or shrinks the disk.
func checkUpgrade(from, to state.Spec) error {
	switch {
	case to.Image == "":
		return fmt.Errorf("an upgrade needs an image: %w", ErrInvalid)
	case to.DiskGiB < from.DiskGiB:
		return fmt.Errorf("the disk can only grow (%d GiB now): %w", from.DiskGiB, ErrInvalid)
	case to == from:
		return fmt.Errorf("the instance has that image and model already: %w", ErrInvalid)
	}
	return nil
}

// fitsInPlace checks that the instance's host can hold it at the larger of
// its shape and to (both exist while a resize in place is unconfirmed).
func fitsInPlace(tx *state.Tx, inst *state.Instance, to state.Spec, policy scheduler.Policy) error {
	h, ok := tx.Host(inst.HostID)
	if !ok || h.Status != state.HostReady {
		return fmt.Errorf("host %q: %w", inst.HostID, ErrHostUnavailable)
	}
	load := tx.HostLoad(h.ID)
	if own, ok := inst.RoomOn(h.ID); ok {
		// What it takes now is freed for what it will take.
		load.Allocated.VCPUs -= own.VCPUs
		load.Allocated.MemoryMiB -= own.MemoryMiB
		load.Allocated.DiskGiB -= own.DiskGiB
		if g := inst.Placement.Group; g != "" {
			if load.Groups[g]--; load.Groups[g] <= 0 {
				delete(load.Groups, g)
			}
		}
	}
	need := state.Spec{VCPUs: max(inst.Spec.VCPUs, to.VCPUs), MemoryMiB: max(inst.Spec.MemoryMiB, to.MemoryMiB),
		DiskGiB: max(inst.Spec.DiskGiB, to.DiskGiB)}
	hv := placement.WithLoad(*h, &load)
	hv.Cordoned = false // a cordon keeps new instances out, not the growth of those there
	if !scheduler.Fits(hv, placement.Request(need, inst.Placement), policy) {
		return fmt.Errorf("host %q cannot hold the new shape: %w", h.ID, ErrNoCapacity)
	}
	return nil
}

// reshaped records what a succeeded step changed of the instance's shape.
func reshaped(inst *state.Instance, op *state.Operation, a lifecycle.StepAction) {
	switch a {
	case lifecycle.ActRescueDomain:
		inst.RescueImage = op.Image
	case lifecycle.ActUnrescueDomain:
		inst.RescueImage = ""
	}
	r := op.Resize
	if r == nil {
		return
	}
	switch a {
	case lifecycle.ActReshape, lifecycle.ActUpgradeDisk:
		inst.Spec = r.To
	case lifecycle.ActUnshape, lifecycle.ActRollbackDisk:
		inst.Spec = r.From
	case lifecycle.ActGrowDisk:
		inst.Spec.DiskGiB = r.To.DiskGiB
	case lifecycle.ActRebuildDisk:
		inst.Spec = r.To
	}
}

// endReshaping records on the instance how a resize, confirm, revert or
// delete ended: a resize that succeeded waits for a confirm (by itself
// after its window); one that did not is gone, as is a confirmed or
// reverted one, or the instance.
func endReshaping(tx *state.Tx, inst *state.Instance, op *state.Operation, end state.OpState) {
	switch op.Kind {
	case lifecycle.OpResize:
		if end != state.OpSucceeded {
			inst.Resize = nil
			return
		}
		if r := *op.Resize; r.Window > 0 {
			r.ConfirmBy = tx.Now().Add(r.Window)
			inst.Resize = &r
		}
	case lifecycle.OpConfirmResize, lifecycle.OpRevertResize, lifecycle.OpDelete:
		if end == state.OpSucceeded {
			inst.Resize = nil
		}
	}
}
