package fake

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Reshape keeps the shut-off domain's disk as its original and redefines
// it at spec over a copy grown to spec.DiskGiB. Already reshaped to spec's
// shape (an original kept) is success, in any state; an original kept for
// another shape is ErrInvalidState, as are a frozen disk and every state
// but shut off. A spec.DiskGiB below the disk's size is ErrInvalidSpec.
func (d *Driver) Reshape(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("Reshape", err) }()
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: reshape: %w", err)
	}
	return d.transition(ctx, "Reshape", spec.ID, func(dom *domain) error {
		if dom.original != nil {
			if sameShape(dom.spec, spec) {
				return nil
			}
			return fmt.Errorf("fake: reshape %s: an original of another resize is kept: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		if dom.state != hypervisor.PowerShutOff {
			return errState("reshape", dom)
		}
		if dom.base != nil {
			return fmt.Errorf("fake: reshape %s: disk frozen: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		size := d.sizeLocked(dom)
		want := int64(spec.DiskGiB) << 30
		if spec.DiskGiB > 0 && want < size {
			return fmt.Errorf("fake: reshape %s: disk of %d GiB below its size of %d bytes: %w", spec.ID, spec.DiskGiB, size, hypervisor.ErrInvalidSpec)
		}
		if err := d.redefineNetworksLocked(spec); err != nil {
			return fmt.Errorf("fake: reshape %s: %w", spec.ID, err)
		}
		dom.original = &original{disk: d.diskLocked(dom), size: dom.size, spec: dom.spec}
		dom.spec = spec
		dom.size = max(want, size)
		return nil
	})
}

// Unshape gives the shut-off domain its original disk back and redefines
// it at spec. No original kept: success when the domain is at spec's shape,
// else ErrInvalidState.
func (d *Driver) Unshape(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("Unshape", err) }()
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: unshape: %w", err)
	}
	return d.transition(ctx, "Unshape", spec.ID, func(dom *domain) error {
		if dom.original == nil {
			if sameShape(dom.spec, spec) {
				return nil
			}
			return fmt.Errorf("fake: unshape %s: no original kept: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		if dom.state != hypervisor.PowerShutOff {
			return errState("unshape", dom)
		}
		if dom.base != nil {
			return fmt.Errorf("fake: unshape %s: disk frozen: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		if err := d.redefineNetworksLocked(spec); err != nil {
			return fmt.Errorf("fake: unshape %s: %w", spec.ID, err)
		}
		dom.disk, dom.size = dom.original.disk, dom.original.size
		dom.spec = spec
		dom.original = nil
		return nil
	})
}

// DropOriginal forgets the original Reshape kept. Nothing kept, or no
// domain at all, is success.
func (d *Driver) DropOriginal(ctx context.Context, id string) (err error) {
	defer func() { err = d.leave("DropOriginal", err) }()
	if err := d.enter(ctx, "DropOriginal"); err != nil {
		return err
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("fake: drop original: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom := d.domains[id]; dom != nil {
		dom.original = nil
	}
	return nil
}

// UpgradeDisk is Reshape for an upgrade: with another image, the new disk
// is that image's content (the one Create gives), not a copy of the old.
func (d *Driver) UpgradeDisk(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("UpgradeDisk", err) }()
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: upgrade disk: %w", err)
	}
	return d.transition(ctx, "UpgradeDisk", spec.ID, func(dom *domain) error {
		if dom.original != nil {
			if sameShape(dom.spec, spec) {
				return nil
			}
			return fmt.Errorf("fake: upgrade disk %s: an original of another change is kept: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		if dom.state != hypervisor.PowerShutOff || dom.base != nil {
			return errState("upgrade disk", dom)
		}
		if err := d.redefineNetworksLocked(spec); err != nil {
			return fmt.Errorf("fake: upgrade disk %s: %w", spec.ID, err)
		}
		dom.original = &original{disk: d.diskLocked(dom), size: dom.size, spec: dom.spec}
		if spec.Image != dom.spec.Image {
			dom.disk, dom.size = nil, 0 // the new image's own content
		}
		dom.spec = spec
		return nil
	})
}
