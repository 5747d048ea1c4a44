package libvirt

import (
	"context"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// GrowDisk: see hypervisor.Driver. While a QEMU runs (running or paused)
// the disk's active layer is grown with a block resize, which QEMU
// announces to the guest (virtio-blk's capacity change) at once; a shut-off
// domain's with qemu-img resize. The size lives in the file only, so the
// next boot sees it without a redefinition. The same size is success in
// any state.
func (d *Driver) GrowDisk(ctx context.Context, id string, diskGiB uint64) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: grow disk: %w", err)
	}
	if diskGiB > hypervisor.MaxDiskGiB {
		return fmt.Errorf("libvirt: grow disk of %s: %d GiB above %d: %w", id, diskGiB, hypervisor.MaxDiskGiB, hypervisor.ErrInvalidSpec)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: grow disk of %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)

	ls, err := d.layers(ctx, "grow disk of", id)
	if err != nil {
		return err
	}
	want := diskGiB << 30
	dev := layoutFor(d.cfg.DomainType).DiskDev
	var have uint64
	if ls.live != nil {
		err = d.call(ctx, func(l *golibvirt.Libvirt) error {
			var err error
			_, have, _, err = l.DomainGetBlockInfo(ls.s.dom, dev, 0)
			return err
		})
		if err != nil {
			return wrapErr("grow disk of", id, err)
		}
	} else if have, err = virtualSize(ctx, ls.persistent.disk); err != nil {
		return fmt.Errorf("libvirt: grow disk of %s: %w", id, err)
	}
	switch {
	case want < have:
		return fmt.Errorf("libvirt: grow disk of %s: %d GiB below its size of %d bytes: %w", id, diskGiB, have, hypervisor.ErrInvalidSpec)
	case want == have:
		return nil
	}
	switch ls.s.state {
	case hypervisor.PowerRunning, hypervisor.PowerPaused:
		err = d.call(ctx, func(l *golibvirt.Libvirt) error {
			return l.DomainBlockResize(ls.s.dom, dev, want, golibvirt.DomainBlockResizeBytes)
		})
		if err != nil {
			return wrapErr("grow disk of", id, fmt.Errorf("block resize: %w", err))
		}
	case hypervisor.PowerShutOff:
		if err := growFile(ctx, ls.persistent.disk, want); err != nil {
			return fmt.Errorf("libvirt: grow disk of %s: %w", id, err)
		}
	default:
		return errState("grow disk of", id, ls.s)
	}
	log.Info("disk grown", "bytes", want, "live", ls.live != nil)
	return nil
}
