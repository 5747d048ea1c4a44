package fake

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// GrowDisk grows the disk to diskGiB while the domain runs, is paused or
// is shut off. The same size is success in any state; a smaller one is
// ErrInvalidSpec.
func (d *Driver) GrowDisk(ctx context.Context, id string, diskGiB uint64) (err error) {
	defer func() { err = d.leave("GrowDisk", err) }()
	if diskGiB > hypervisor.MaxDiskGiB {
		return fmt.Errorf("fake: grow disk of %s: %d GiB above %d: %w", id, diskGiB, hypervisor.MaxDiskGiB, hypervisor.ErrInvalidSpec)
	}
	return d.transition(ctx, "GrowDisk", id, func(dom *domain) error {
		size, want := d.sizeLocked(dom), int64(diskGiB)<<30
		switch {
		case want < size:
			return fmt.Errorf("fake: grow disk of %s: %d GiB below its size of %d bytes: %w", id, diskGiB, size, hypervisor.ErrInvalidSpec)
		case want == size:
			dom.spec.DiskGiB = diskGiB
			return nil
		}
		switch dom.state {
		case hypervisor.PowerRunning, hypervisor.PowerPaused, hypervisor.PowerShutOff:
		default:
			return errState("grow disk of", dom)
		}
		dom.size = want
		dom.spec.DiskGiB = diskGiB
		return nil
	})
}
