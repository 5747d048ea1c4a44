package libvirt

import (
	"github.com/flotilla-vm/flotilla/hypervisor"

	"context"
	"errors"
	"fmt"
	"path/filepath"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Delete destroys and undefines the domain (with its managed save image and
// NVRAM) and removes every file of the instance (see instancePaths): disk
// overlay, frozen top and mid, kept original, staged layers, temporary files,
// console log and guest socket. A missing domain is success; its leftover
// files are still removed.
func (d *Driver) Delete(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: delete: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: delete %s: %w", id, err)
	}
	defer unlock()

	log := d.instanceLog(id)
	if err := d.deleteDomain(ctx, id); err != nil {
		return err
	}
	if err := removeAllFiles(d.cfg.DiskDir, d.cfg.RunDir, id); err != nil {
		return fmt.Errorf("libvirt: delete %s: domain removed, files remain: %w", id, err)
	}
	// The domain's reservations, and its networks if it was their last
	// user. A failure leaves them to the next Resync: the instance is gone.
	if err := d.gcNetworks(ctx); err != nil {
		log.Warn("delete: cleaning up networks failed", "err", err)
	}
	log.Info("domain deleted")
	return nil
}

// deleteDomain destroys and undefines the domain; a missing one is success.
func (d *Driver) deleteDomain(ctx context.Context, id string) error {
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := l.DomainLookupByName(domainName(id))
		if err != nil {
			return err
		}
		active, err := l.DomainIsActive(dom)
		if err != nil {
			return err
		}
		if active != 0 {
			// "not running" here only means it stopped meanwhile.
			if err := l.DomainDestroy(dom); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
				return err
			}
		}
		return l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineNvram)
	})
	if isNoDomain(err) {
		return nil
	}
	return wrapErr("delete", id, err)
}

// removeAllFiles removes every file of the instance, those that exist.
func removeAllFiles(diskDir, runDir, id string) error {
	p := pathsFor(diskDir, runDir, id)
	errs := []error{removeFiles(p)}
	for _, f := range []string{p.Top2, p.Top, p.Original, p.IncomingBase, p.IncomingMid, p.IncomingTop, p.Rescue} {
		errs = append(errs, removeIfExists(f))
	}
	for _, pat := range tempPatterns(diskDir, id) {
		tmp, _ := filepath.Glob(pat)
		for _, f := range tmp {
			errs = append(errs, removeIfExists(f))
		}
	}
	return errors.Join(errs...)
}

// removeFiles removes the files Create makes (overlay, seed, console log,
// guest socket), those that exist.
func removeFiles(p instancePaths) error {
	var errs []error
	for _, f := range []string{p.Disk, p.Seed, p.ConsoleLog, p.GuestSock} {
		errs = append(errs, removeIfExists(f))
	}
	return errors.Join(errs...)
}
