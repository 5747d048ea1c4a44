package fake

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// RefreezeDisk freezes a frozen disk once more: what the guest wrote since
// FreezeDisk becomes the mid, immutable (OpenDisk's DiskMid gives it out as
// the blocks that differ from the base, readable while the guest runs), and
// later writes make the top (DiskTop: the blocks that differ from base and
// mid together). Already refrozen is success in any state; a disk that is
// not frozen is ErrInvalidState, and so are the states FreezeDisk refuses.
func (d *Driver) RefreezeDisk(ctx context.Context, id string) (err error) {
	defer func() { err = d.leave("RefreezeDisk", err) }()
	return d.transition(ctx, "RefreezeDisk", id, func(dom *domain) error {
		if dom.mid != nil {
			return nil
		}
		if dom.base == nil {
			return fmt.Errorf("fake: refreeze disk of %s: disk not frozen: %w", id, hypervisor.ErrInvalidState)
		}
		if !canLayer(dom.state) {
			return errState("refreeze disk of", dom)
		}
		// Disk slices are never modified in place, so the mid may share it.
		dom.mid = d.diskLocked(dom)
		return nil
	})
}
