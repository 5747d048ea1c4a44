package fake

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// RebuildDisk keeps the shut-off domain's disk as its original and gives
// it a fresh one from spec.Image (the content every new disk has).
func (d *Driver) RebuildDisk(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("RebuildDisk", err) }()
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: rebuild disk: %w", err)
	}
	if len(d.images) > 0 && !d.images[spec.Image] {
		return fmt.Errorf("fake: rebuild disk %s: image %q: %w", spec.ID, spec.Image, hypervisor.ErrImageNotFound)
	}
	return d.transition(ctx, "RebuildDisk", spec.ID, func(dom *domain) error {
		if dom.original != nil {
			if dom.spec.Image == spec.Image {
				return nil
			}
			return fmt.Errorf("fake: rebuild disk %s: an original is kept: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		if dom.state != hypervisor.PowerShutOff || dom.base != nil || dom.rescue != "" {
			return errState("rebuild disk", dom)
		}
		dom.original = &original{disk: d.diskLocked(dom), size: dom.size, spec: dom.spec}
		dom.spec = spec
		dom.disk, dom.size = nil, int64(spec.DiskGiB)<<30
		return nil
	})
}

// RescueDomain records that the shut-off domain boots image.
func (d *Driver) RescueDomain(ctx context.Context, spec hypervisor.DomainSpec, image string) (err error) {
	defer func() { err = d.leave("RescueDomain", err) }()
	if err := hypervisor.ValidateImageName(image); err != nil {
		return fmt.Errorf("fake: rescue: %w", err)
	}
	if len(d.images) > 0 && !d.images[image] {
		return fmt.Errorf("fake: rescue %s: image %q: %w", spec.ID, image, hypervisor.ErrImageNotFound)
	}
	return d.transition(ctx, "RescueDomain", spec.ID, func(dom *domain) error {
		if dom.rescue == image {
			return nil
		}
		if dom.state != hypervisor.PowerShutOff || dom.rescue != "" {
			return errState("rescue", dom)
		}
		dom.rescue = image
		return nil
	})
}

// UnrescueDomain records that the shut-off domain boots its own disk again.
func (d *Driver) UnrescueDomain(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("UnrescueDomain", err) }()
	return d.transition(ctx, "UnrescueDomain", spec.ID, func(dom *domain) error {
		if dom.rescue == "" {
			return nil
		}
		if dom.state != hypervisor.PowerShutOff {
			return errState("unrescue", dom)
		}
		dom.rescue = ""
		return nil
	})
}

// BundleDisk makes image a known image (when the driver has a list).
func (d *Driver) BundleDisk(ctx context.Context, id, image, _ string) (err error) {
	defer func() { err = d.leave("BundleDisk", err) }()
	if err := hypervisor.ValidateImageName(image); err != nil {
		return fmt.Errorf("fake: bundle: %w", err)
	}
	return d.transition(ctx, "BundleDisk", id, func(dom *domain) error {
		if dom.state != hypervisor.PowerShutOff {
			return errState("bundle", dom)
		}
		if d.bundled[image] {
			return fmt.Errorf("fake: bundle %s: image %q: %w", id, image, hypervisor.ErrAlreadyExists)
		}
		d.bundled[image] = true
		if len(d.images) > 0 {
			d.images[image] = true
		}
		return nil
	})
}
