package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor"
)

// prepareImaging fills in a rebuild, rescue, unrescue or bundle: the image
// each works with, checked at commit time on every replica.
//
// A rebuild is a resize in place whose new shape differs only in its
// image: op.Resize From (the old disk's image, restored by the undo) and To
// (the new image), so the steps that make and restore the disk act with
// the right one (orchestrator.stepSpec). A rescue records its rescue image
// on the operation (and, once the domain boots it, on the instance); an
// unrescue takes it from the instance, for its undo.
func prepareImaging(inst *state.Instance, op *state.Operation, req *state.Operation, status lifecycle.Status) (lifecycle.Shape, error) {
	// A domain that may run (RUNNING, or ERROR) is forced off first.
	running := status != lifecycle.StatusStopped
	sh := lifecycle.Shape{WasRunning: running, StartAfter: true}
	switch op.Kind {
	case lifecycle.OpRebuild:
		to := inst.Spec
		if req.Image != "" {
			to.Image = req.Image
		}
		if err := checkImageName(to.Image); err != nil {
			return sh, err
		}
		op.Resize = &state.Resize{From: inst.Spec, To: to, Source: inst.HostID, WasRunning: running}
	case lifecycle.OpRescue:
		img := req.Image
		if img == "" {
			img = inst.Spec.Image
		}
		if err := checkImageName(img); err != nil {
			return sh, err
		}
		op.Image = img
	case lifecycle.OpUnrescue:
		if inst.RescueImage == "" {
			return sh, fmt.Errorf("instance %q is not rescued: %w", inst.ID, ErrNotAllowed)
		}
		op.Image = inst.RescueImage
		sh.WasRunning = inst.Power != lifecycle.PowerShutOff
	case lifecycle.OpBundle:
		if req.Image == "" {
			return sh, fmt.Errorf("a bundle needs the name of its new image: %w", ErrInvalid)
		}
		if err := checkImageName(req.Image); err != nil {
			return sh, err
		}
		if req.Image == inst.Spec.Image {
			return sh, fmt.Errorf("image %q is the instance's own: %w", req.Image, ErrInvalid)
		}
		op.Image = req.Image
		sh = lifecycle.Shape{}
	}
	return sh, nil
}

// checkImageName refuses a name the hosts would refuse.
func checkImageName(name string) error {
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
