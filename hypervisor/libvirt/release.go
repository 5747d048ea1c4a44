package libvirt

import (
	"context"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Release undefines a shut-off domain and keeps its disk (and seed): a
// deallocated instance holds nothing on the host but its files.
func (d *Driver) Release(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: release: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: release %s: %w", id, err)
	}
	defer unlock()
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return nil
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("release", id, s)
	}
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := l.DomainLookupByName(domainName(id))
		if err != nil {
			return err
		}
		return l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineNvram)
	})
	if isNoDomain(err) {
		return nil
	}
	if err != nil {
		return wrapErr("release", id, err)
	}
	if err := d.gcNetworks(ctx); err != nil {
		d.instanceLog(id).Warn("release: cleaning up networks failed", "err", err)
	}
	d.instanceLog(id).Info("domain released, disk kept")
	return nil
}

// Define defines the domain, shut off, over the disk Release kept.
func (d *Driver) Define(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: define: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: define %s: %w", id, err)
	}
	defer unlock()
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case s.found && s.state == hypervisor.PowerShutOff:
		return nil
	case s.found:
		return fmt.Errorf("libvirt: define %s: domain exists and is %s: %w", id, s.state, hypervisor.ErrAlreadyExists)
	}
	p, _, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: define %s: %w", id, err)
	}
	if !exists(p.Paths.Disk) {
		return fmt.Errorf("libvirt: define %s: no disk kept at %s: %w", id, p.Paths.Disk, hypervisor.ErrNotFound)
	}
	if err := d.redefineGuest(ctx, spec, p); err != nil {
		return wrapErr("define", id, err)
	}
	d.instanceLog(id).Info("domain defined over its kept disk")
	return nil
}
