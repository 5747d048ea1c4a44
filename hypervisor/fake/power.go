package fake

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// destroyReserve is kept back from ctx's deadline in a forced Shutdown so the
// destroy still happens inside it.
const destroyReserve = 10 * time.Millisecond

// Preflight checks what the libvirt driver's does, against the fake's
// images and its simulated free space (SetDiskFree): a create needs room
// for its disk (Options.DiskSize) plus reserve, a boot the reserve alone.
func (d *Driver) Preflight(ctx context.Context, spec hypervisor.DomainSpec, boot bool, reserve uint64) error {
	if err := d.enter(ctx, "Preflight"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: preflight: %w", err)
	}
	if len(d.images) > 0 && !d.images[spec.Image] {
		return fmt.Errorf("fake: preflight %s: image %q: %w", spec.ID, spec.Image, hypervisor.ErrImageNotFound)
	}
	if err := d.checkServed(spec.NICs); err != nil {
		return fmt.Errorf("fake: preflight %s: %w", spec.ID, err)
	}
	need := uint64(d.opts.DiskSize)
	if boot {
		need = 0
	}
	d.mu.Lock()
	free := d.diskFree
	d.mu.Unlock()
	if err := hypervisor.CheckDiskRoom(diskDir, free, need, reserve); err != nil {
		return fmt.Errorf("fake: preflight %s: %w", spec.ID, err)
	}
	return nil
}

// Create defines and boots a domain. A running domain of the same id is
// success; any other existing one is ErrAlreadyExists.
func (d *Driver) Create(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := d.enter(ctx, "Create"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: create: %w", err)
	}
	if len(d.images) > 0 && !d.images[spec.Image] {
		return fmt.Errorf("fake: create %s: image %q: %w", spec.ID, spec.Image, hypervisor.ErrImageNotFound)
	}
	if err := d.checkServed(spec.NICs); err != nil {
		return fmt.Errorf("fake: create %s: %w", spec.ID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom := d.domains[spec.ID]; dom != nil {
		if dom.state == hypervisor.PowerRunning {
			return nil
		}
		return fmt.Errorf("fake: create %s: domain exists and is %s: %w", spec.ID, dom.state, hypervisor.ErrAlreadyExists)
	}
	if err := d.ensureNetworksLocked(spec); err != nil {
		return fmt.Errorf("fake: create %s: %w", spec.ID, err)
	}
	dom := newDomain(spec)
	d.domains[spec.ID] = dom
	d.setLocked(dom, hypervisor.PowerRunning, "booted")
	return nil
}

// Start boots a shut-off domain or restores a saved one. Running is success.
func (d *Driver) Start(ctx context.Context, id string) error {
	return d.transition(ctx, "Start", id, func(dom *domain) error {
		switch dom.state {
		case hypervisor.PowerRunning:
		case hypervisor.PowerShutOff:
			d.setLocked(dom, hypervisor.PowerRunning, "booted")
		case hypervisor.PowerSavedToDisk:
			d.setLocked(dom, hypervisor.PowerRunning, "restored")
		default:
			return errState("start", dom)
		}
		return nil
	})
}

// Destroy pulls the plug. A stopped domain is success.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	if err := d.enter(ctx, "Destroy"); err != nil {
		return err
	}
	return d.destroy(id)
}

func (d *Driver) destroy(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked("destroy", id)
	if err != nil {
		return err
	}
	if !isOff(dom.state) {
		d.setLocked(dom, hypervisor.PowerShutOff, "destroyed")
	}
	return nil
}

// Reboot restarts a running guest; a soft reboot is ignored by a guest that
// ignores ACPI. A hard reboot boots a shut-off or crashed domain, as the
// libvirt driver's does.
func (d *Driver) Reboot(ctx context.Context, id string, hard bool) error {
	return d.transition(ctx, "Reboot", id, func(dom *domain) error {
		if hard && (dom.state == hypervisor.PowerShutOff || dom.state == hypervisor.PowerCrashed) {
			d.setLocked(dom, hypervisor.PowerRunning, "booted")
			return nil
		}
		if dom.state != hypervisor.PowerRunning {
			return errState("reboot", dom)
		}
		if _, reacts := d.shutdownDelayLocked(id); hard || reacts {
			d.setLocked(dom, hypervisor.PowerRunning, "booted")
		}
		return nil
	})
}

// Pause stops a running guest's vCPUs. Paused is success.
func (d *Driver) Pause(ctx context.Context, id string) error {
	return d.transition(ctx, "Pause", id, func(dom *domain) error {
		switch dom.state {
		case hypervisor.PowerPaused:
		case hypervisor.PowerRunning:
			d.setLocked(dom, hypervisor.PowerPaused, "user")
		default:
			return errState("pause", dom)
		}
		return nil
	})
}

// Resume continues a paused guest. Running is success.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.transition(ctx, "Resume", id, func(dom *domain) error {
		switch dom.state {
		case hypervisor.PowerRunning:
		case hypervisor.PowerPaused:
			d.setLocked(dom, hypervisor.PowerRunning, "unpaused")
		default:
			return errState("resume", dom)
		}
		return nil
	})
}

// SetTitle changes the domain's display name, in any power state.
func (d *Driver) SetTitle(ctx context.Context, id, title string) error {
	if err := hypervisor.ValidateTitle(title); err != nil {
		return fmt.Errorf("fake: set title: %w", err)
	}
	return d.transition(ctx, "SetTitle", id, func(dom *domain) error {
		dom.spec.Name = title
		return nil
	})
}

// Save stops a running or paused guest into its managed save image. Saved is
// success.
func (d *Driver) Save(ctx context.Context, id string) error {
	return d.transition(ctx, "Save", id, func(dom *domain) error {
		switch dom.state {
		case hypervisor.PowerSavedToDisk:
		case hypervisor.PowerRunning, hypervisor.PowerPaused:
			d.setLocked(dom, hypervisor.PowerSavedToDisk, "saved")
		default:
			return errState("save", dom)
		}
		return nil
	})
}

// Delete destroys and removes the domain, and whatever is staged for its
// id. A missing domain is success.
func (d *Driver) Delete(ctx context.Context, id string) error {
	if err := d.enter(ctx, "Delete"); err != nil {
		return err
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("fake: delete: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.staged, id)
	delete(d.released, id)
	d.releaseNetworksLocked(id, nil)
	dom := d.domains[id]
	if dom == nil {
		return nil
	}
	if isActive(dom.state) {
		d.setLocked(dom, hypervisor.PowerShutOff, "destroyed")
	}
	delete(d.domains, id)
	dom.stopTimer()
	dom.gen++
	close(dom.changed) // wake Shutdown waiters; they find the domain gone
	dom.changed = make(chan struct{})
	d.emitLocked(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerNoDomain, Reason: "missing", ObservedAt: time.Now()})
	return nil
}

// Shutdown presses the ACPI button and waits up to grace (and ctx) for the
// guest to power off, then destroys it if force is set. A paused guest is
// resumed first so that it can react, as the libvirt driver does.
func (d *Driver) Shutdown(ctx context.Context, id string, grace time.Duration, force bool) error {
	if err := d.enter(ctx, "Shutdown"); err != nil {
		return err
	}
	d.mu.Lock()
	dom, err := d.lookupLocked("shutdown", id)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	switch dom.state {
	case hypervisor.PowerShutOff, hypervisor.PowerSavedToDisk:
		d.mu.Unlock()
		return nil
	case hypervisor.PowerCrashed:
		d.setLocked(dom, hypervisor.PowerShutOff, "destroyed")
		d.mu.Unlock()
		return nil
	case hypervisor.PowerPaused:
		d.setLocked(dom, hypervisor.PowerRunning, "unpaused")
	}
	d.pressACPILocked(dom)
	d.mu.Unlock()

	wait := grace
	if dl, ok := ctx.Deadline(); ok && force {
		wait = min(wait, time.Until(dl)-destroyReserve)
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.domains[id] != dom || isOff(dom.state) {
			d.mu.Unlock()
			return nil
		}
		changed := dom.changed
		d.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("fake: shutdown %s: %w", id, ctx.Err())
		case <-timer.C:
			if !force {
				return fmt.Errorf("fake: shutdown %s: guest still running after %s: %w", id, grace, context.DeadlineExceeded)
			}
			return d.destroy(id)
		}
	}
}

// transition runs fn on the domain under the lock, after the common prologue.
func (d *Driver) transition(ctx context.Context, method, id string, fn func(*domain) error) error {
	if err := d.enter(ctx, method); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(method, id)
	if err != nil {
		return err
	}
	return fn(dom)
}
