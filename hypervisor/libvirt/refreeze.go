package libvirt

import (
	"context"
	"fmt"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// RefreezeDisk: see hypervisor.Driver. The frozen disk's top,
// <id>.top.qcow2, becomes the mid: a running (or shutting-down) domain gets
// a second external disk-only snapshot into <id>.top2.qcow2, a shut-off one
// a new overlay made with qemu-img, and the persistent definition names
// <id>.top2.qcow2. Refrozen already (the definition names it) is success in
// any state, after completing a refreeze interrupted before its
// redefinition; so a retried step never adds a third layer.
func (d *Driver) RefreezeDisk(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: refreeze disk: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: refreeze disk of %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)

	ls, err := d.layers(ctx, "refreeze disk of", id)
	if err != nil {
		return err
	}
	if ls.refrozen(paths) {
		if ls.persistent.disk != paths.Top2 {
			// A refreeze interrupted between the snapshot and the redefinition.
			if err := d.define(ctx, ls.persistent.params, paths.Top2); err != nil {
				return wrapErr("refreeze disk of", id, err)
			}
		}
		return nil
	}
	if !ls.frozen(paths) {
		return fmt.Errorf("libvirt: refreeze disk of %s: disk not frozen (it is %s): %w", id, ls.current(), hypervisor.ErrInvalidState)
	}
	if ls.s.state != hypervisor.PowerRunning && ls.s.state != hypervisor.PowerShuttingDown && ls.s.state != hypervisor.PowerShutOff {
		return errState("refreeze disk of", id, ls.s)
	}
	// The mid must be over the base, so that a thaw merges it there.
	if err := checkChain(ctx, paths.Top, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: refreeze disk of %s: %w", id, err)
	}
	// Nothing uses a second top now: a leftover of an interrupted refreeze.
	if err := removeIfExists(paths.Top2); err != nil {
		return fmt.Errorf("libvirt: refreeze disk of %s: %w", id, err)
	}
	started := time.Now()
	if err := d.newTop(ctx, "refreeze disk of", id, ls, paths.Top, paths.Top2); err != nil {
		return err
	}
	if err := d.define(ctx, ls.persistent.params, paths.Top2); err != nil {
		if ls.s.state == hypervisor.PowerShutOff {
			_ = removeIfExists(paths.Top2)
		}
		return wrapErr("refreeze disk of", id, fmt.Errorf("redefine: %w", err))
	}
	log.Info("disk refrozen", "live", ls.s.state != hypervisor.PowerShutOff, "mid", paths.Top, "top", paths.Top2,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// commitMidLive merges a running refrozen disk's mid into the base: a
// non-active block commit with top the mid and base the base (checked
// first: the mid's backing file is the base, never the image), after which
// QEMU points the top at the base. It waits for the job to end and then
// checks, from the top's header, that the mid is out of the chain. A mid
// merged already (the top's backing file is the base) is left alone; a
// commit of the mid already under way (an interrupted ThawDisk) is waited
// for; an active commit under way means the mid is merged and the top's
// commit started (commitLive waits for it).
func (d *Driver) commitMidLive(ctx context.Context, id string, dom golibvirt.Domain, paths instancePaths) error {
	log := d.instanceLog(id)
	disk := layoutFor(d.cfg.DomainType).DiskDev
	job := func() (bool, golibvirt.DomainBlockJobType, error) {
		var found, typ int32
		err := d.call(ctx, func(l *golibvirt.Libvirt) error {
			var err error
			found, typ, _, _, _, err = l.DomainGetBlockJobInfo(dom, disk, 0)
			return err
		})
		if err != nil {
			return false, 0, wrapErr("thaw disk of", id, err)
		}
		return found != 0, golibvirt.DomainBlockJobType(typ), nil
	}
	waitJob := func() error {
		for {
			found, _, err := job()
			if err != nil || !found {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("libvirt: thaw disk of %s: %w", id, ctx.Err())
			case <-time.After(commitPoll):
			}
		}
	}
	merged := func() (bool, error) {
		h, err := parseQcow2Header(paths.Top2)
		if err != nil {
			return false, fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
		switch h.backing {
		case paths.Disk:
			return true, nil
		case paths.Top:
			return false, nil
		}
		return false, fmt.Errorf("libvirt: thaw disk of %s: top %s is backed by %q, neither the mid nor the base: %w",
			id, paths.Top2, h.backing, hypervisor.ErrInvalidState)
	}

	found, typ, err := job()
	if err != nil {
		return err
	}
	if found && typ == golibvirt.DomainBlockJobTypeActiveCommit {
		return nil
	}
	if found {
		log.Info("thaw: block job already under way; waiting for it", "type", typ.String())
		if err := waitJob(); err != nil {
			return err
		}
	}
	if ok, err := merged(); err != nil || ok {
		return err
	}
	if err := checkChain(ctx, paths.Top, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
	}
	started := time.Now()
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		return l.DomainBlockCommit(dom, disk, golibvirt.OptString{paths.Disk}, golibvirt.OptString{paths.Top}, 0, 0)
	})
	if err != nil {
		return wrapErr("thaw disk of", id, fmt.Errorf("block commit of the mid: %w", err))
	}
	log.Info("thaw: live block commit of the mid started")
	if err := waitJob(); err != nil {
		return err
	}
	ok, err := merged()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("libvirt: thaw disk of %s: block commit of the mid ended without merging it: %w", id, hypervisor.ErrInvalidState)
	}
	log.Info("thaw: mid merged into the base", "took", time.Since(started).Round(time.Millisecond))
	return nil
}
