package libvirt

import (
	"context"
	"errors"
	"fmt"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

const (
	// pollInterval is how often Shutdown looks at the domain's state.
	pollInterval = 50 * time.Millisecond
	// acpiRepeat re-presses the power button: a guest still booting when
	// the first press came may have missed it.
	acpiRepeat = 5 * time.Second
	// destroyReserve is kept back from ctx's deadline during a forced
	// Shutdown so that the destroy still fits inside it.
	destroyReserve = time.Second
)

// Start boots a stopped domain; libvirt restores it from its managed save
// image when there is one. A running domain is success.
func (d *Driver) Start(ctx context.Context, id string) error {
	s, err := d.observeValid(ctx, "start", id)
	if err != nil {
		return err
	}
	switch s.state {
	case hypervisor.PowerRunning:
		return nil
	case hypervisor.PowerShutOff, hypervisor.PowerSavedToDisk:
	default:
		return errState("start", id, s)
	}
	started := time.Now()
	if err := d.boot(ctx, "start", id, s); err != nil {
		return err
	}
	d.instanceLog(id).Info("domain started", "restored", s.state == hypervisor.PowerSavedToDisk,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// boot starts the inactive domain s. A start that raced with another and
// finds it running is success.
func (d *Driver) boot(ctx context.Context, op, id string, s domainState) error {
	// Its networks first: one an operator stopped, or libvirtd lost, since
	// the last resync would fail the start.
	var nics []hypervisor.NIC
	if def, err := d.readDefinition(ctx, id, s, false); err == nil {
		nics = def.params.NICs
	} else {
		d.instanceLog(id).Warn("boot: definition unreadable; booting without checking its networks", "err", err)
	}
	netDone, err := d.ensureNetworks(ctx, id, nics)
	if err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, id, err)
	}
	defer netDone()
	err = d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainCreate(s.dom) })
	if isCode(err, golibvirt.ErrOperationInvalid) {
		if now, oerr := d.observe(ctx, id); oerr == nil && now.state == hypervisor.PowerRunning {
			return nil
		}
	}
	return wrapErr(op, id, err)
}

// Shutdown presses the ACPI power button and waits, up to grace and ctx, for
// the guest to power off; then destroys it if force is set. A paused guest is
// resumed first, since it cannot react to the button while its vCPUs stop.
func (d *Driver) Shutdown(ctx context.Context, id string, grace time.Duration, force bool) error {
	s, err := d.observeValid(ctx, "shutdown", id)
	if err != nil {
		return err
	}
	log := d.instanceLog(id)
	switch s.state {
	case hypervisor.PowerShutOff, hypervisor.PowerSavedToDisk:
		return nil
	case hypervisor.PowerNoDomain:
		return errState("shutdown", id, s)
	case hypervisor.PowerCrashed:
		// A crashed guest cannot answer the button; destroying it loses nothing.
		return d.Destroy(ctx, id)
	case hypervisor.PowerPaused:
		if err := d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainResume(s.dom) }); err != nil {
			return wrapErr("shutdown (resume first)", id, err)
		}
	}

	waitUntil := time.Now().Add(grace)
	if dl, ok := ctx.Deadline(); ok && force && dl.Add(-destroyReserve).Before(waitUntil) {
		waitUntil = dl.Add(-destroyReserve)
	}
	waitCtx, cancel := context.WithDeadline(ctx, waitUntil)
	defer cancel()

	started := time.Now()
	off, err := d.pressAndWait(waitCtx, s.dom, id)
	if off {
		log.Info("guest powered off", "took", time.Since(started).Round(time.Millisecond))
		return nil
	}
	if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up, or libvirt failed: not a grace timeout.
		return wrapErr("shutdown", id, err)
	}
	if !force {
		return fmt.Errorf("libvirt: shutdown %s: guest still running after %s: %w", id, grace, context.DeadlineExceeded)
	}
	log.Warn("guest ignored ACPI shutdown; destroying", "grace", grace)
	return d.Destroy(ctx, id)
}

// pressAndWait presses the power button and polls until the domain is off
// (true) or ctx ends.
func (d *Driver) pressAndWait(ctx context.Context, dom golibvirt.Domain, id string) (bool, error) {
	press := func() error {
		err := d.call(ctx, func(l *golibvirt.Libvirt) error {
			return l.DomainShutdownFlags(dom, golibvirt.DomainShutdownAcpiPowerBtn)
		})
		// "domain is not running": it got there on its own; the poll sees it.
		if isCode(err, golibvirt.ErrOperationInvalid) {
			return nil
		}
		return err
	}
	if err := press(); err != nil {
		return false, err
	}
	lastPress := time.Now()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		s, err := d.observe(ctx, id)
		if err != nil {
			return false, err
		}
		if isOff(s.state) {
			return true, nil
		}
		if time.Since(lastPress) >= acpiRepeat {
			if err := press(); err != nil {
				return false, err
			}
			lastPress = time.Now()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// Destroy powers the domain off at once. An already stopped domain is success.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	s, err := d.observeValid(ctx, "destroy", id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("destroy", id, s)
	}
	if isOff(s.state) {
		return nil
	}
	err = d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainDestroy(s.dom) })
	if isCode(err, golibvirt.ErrOperationInvalid) {
		if now, oerr := d.observe(ctx, id); oerr == nil && isOff(now.state) {
			return nil
		}
	}
	if err != nil {
		return wrapErr("destroy", id, err)
	}
	d.instanceLog(id).Info("domain destroyed")
	return nil
}

// Reboot restarts a running guest: soft presses ACPI's power button (libvirt
// restarts the domain when the guest powers off), hard resets the machine.
// A hard reboot of a shut-off or crashed domain boots it instead (what
// Nova's hard reboot of a SHUTOFF server does): there is nothing to reset.
func (d *Driver) Reboot(ctx context.Context, id string, hard bool) error {
	s, err := d.observeValid(ctx, "reboot", id)
	if err != nil {
		return err
	}
	if hard && (s.state == hypervisor.PowerShutOff || s.state == hypervisor.PowerCrashed) {
		return d.bootForReboot(ctx, id, s)
	}
	if s.state != hypervisor.PowerRunning {
		return errState("reboot", id, s)
	}
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		if hard {
			return l.DomainReset(s.dom, 0)
		}
		return l.DomainReboot(s.dom, golibvirt.DomainRebootAcpiPowerBtn)
	})
	if err != nil {
		return wrapErr("reboot", id, err)
	}
	d.instanceLog(id).Info("domain rebooting", "hard", hard)
	return nil
}

// bootForReboot boots a domain a hard reboot found off. A crashed domain
// may still hold its QEMU process (on_crash=preserve): it is destroyed
// first; one that is already inactive answers "not running", which is fine.
func (d *Driver) bootForReboot(ctx context.Context, id string, s domainState) error {
	log := d.instanceLog(id)
	if s.state == hypervisor.PowerCrashed {
		err := d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainDestroy(s.dom) })
		if err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
			return wrapErr("reboot (destroy the crashed domain)", id, err)
		}
	}
	started := time.Now()
	if err := d.boot(ctx, "reboot (boot)", id, s); err != nil {
		return err
	}
	log.Info("domain booted by a hard reboot", "was", s.state, "reason", s.reason,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// Pause stops the vCPUs, keeping memory. A paused domain is success.
func (d *Driver) Pause(ctx context.Context, id string) error {
	s, err := d.observeValid(ctx, "pause", id)
	if err != nil {
		return err
	}
	switch s.state {
	case hypervisor.PowerPaused:
		return nil
	case hypervisor.PowerRunning:
	default:
		return errState("pause", id, s)
	}
	if err := d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainSuspend(s.dom) }); err != nil {
		return wrapErr("pause", id, err)
	}
	d.instanceLog(id).Info("domain paused")
	return nil
}

// Resume restarts the vCPUs of a paused domain. A running domain is success.
func (d *Driver) Resume(ctx context.Context, id string) error {
	s, err := d.observeValid(ctx, "resume", id)
	if err != nil {
		return err
	}
	switch s.state {
	case hypervisor.PowerRunning:
		return nil
	case hypervisor.PowerPaused:
	default:
		return errState("resume", id, s)
	}
	if err := d.call(ctx, func(l *golibvirt.Libvirt) error { return l.DomainResume(s.dom) }); err != nil {
		return wrapErr("resume", id, err)
	}
	d.instanceLog(id).Info("domain resumed")
	return nil
}

// Save writes the guest's memory to libvirt's managed save image and stops
// the domain; the next Start restores it, running even if it was paused. A
// saved domain is success.
func (d *Driver) Save(ctx context.Context, id string) error {
	s, err := d.observeValid(ctx, "save", id)
	if err != nil {
		return err
	}
	switch s.state {
	case hypervisor.PowerSavedToDisk:
		return nil
	case hypervisor.PowerRunning, hypervisor.PowerPaused:
	default:
		return errState("save", id, s)
	}
	started := time.Now()
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		return l.DomainManagedSave(s.dom, uint32(golibvirt.DomainSaveRunning))
	})
	if err != nil {
		return wrapErr("save", id, err)
	}
	d.instanceLog(id).Info("domain saved to disk", "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// observeValid validates id and observes the domain.
func (d *Driver) observeValid(ctx context.Context, op, id string) (domainState, error) {
	if err := hypervisor.ValidateID(id); err != nil {
		return domainState{}, fmt.Errorf("libvirt: %s: %w", op, err)
	}
	return d.observe(ctx, id)
}
