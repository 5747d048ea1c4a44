package libvirt

import (
	"context"
	"fmt"
	"syscall"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Preflight checks, before a create or a boot, what would otherwise fail
// half-way or leave a guest that cannot write: the image is complete (a
// boot needs it as its disk's backing file), a requested disk size is not
// below the image's, and the disk directory has room. A create needs room
// for a new overlay (hypervisor.OverlayBytes: the disk is thin, the image is
// shared and not copied) plus the reserve, a boot the reserve alone; the
// reserve is what guests' thin disks grow into, so a host that is nearly
// full takes no more work rather than pausing guests on ENOSPC later.
func (d *Driver) Preflight(ctx context.Context, spec hypervisor.DomainSpec, boot bool, reserve uint64) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: preflight: %w", err)
	}
	log := d.instanceLog(spec.ID)
	img, err := resolveImage(d.cfg.ImageDir, spec.Image)
	if err != nil {
		return fmt.Errorf("libvirt: preflight %s: %w", spec.ID, err)
	}
	if err := checkServed(spec.NICs); err != nil {
		return fmt.Errorf("libvirt: preflight %s: %w", spec.ID, err)
	}
	need := uint64(0)
	if !boot {
		if err := checkDiskSize(ctx, img.Disk, spec.DiskGiB); err != nil {
			return fmt.Errorf("libvirt: preflight %s: %w", spec.ID, err)
		}
		need = hypervisor.OverlayBytes
	}
	free, err := freeBytes(d.cfg.DiskDir)
	if err != nil {
		return fmt.Errorf("libvirt: preflight %s: %w", spec.ID, err)
	}
	if err := hypervisor.CheckDiskRoom(d.cfg.DiskDir, free, need, reserve); err != nil {
		log.Warn("preflight: not enough free disk", "dir", d.cfg.DiskDir, "free_bytes", free,
			"need_bytes", need, "reserve_bytes", reserve, "boot", boot)
		return fmt.Errorf("libvirt: preflight %s: %w", spec.ID, err)
	}
	log.Info("preflight passed", "image", spec.Image, "dir", d.cfg.DiskDir, "free_bytes", free,
		"need_bytes", need, "reserve_bytes", reserve, "boot", boot)
	return nil
}

// freeBytes is the space in dir that an unprivileged writer may still use:
// QEMU need not run as root, so blocks kept for root do not count.
func freeBytes(dir string) (uint64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fs.Bavail * uint64(fs.Bsize), nil
}
