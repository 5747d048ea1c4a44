package fake

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Release undefines a shut-off domain and keeps its disk apart, for Define.
func (d *Driver) Release(ctx context.Context, id string) (err error) {
	defer func() { err = d.leave("Release", err) }()
	if err := d.enter(ctx, "Release"); err != nil {
		return err
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("fake: release: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return nil
	}
	if dom.state != hypervisor.PowerShutOff {
		return fmt.Errorf("fake: release %s: domain is %s: %w", id, dom.state, hypervisor.ErrInvalidState)
	}
	d.releaseNetworksLocked(id, nil)
	delete(d.domains, id)
	d.released[id] = dom
	dom.gen++
	close(dom.changed)
	dom.changed = make(chan struct{})
	d.emitLocked(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerNoDomain, Reason: "released", ObservedAt: time.Now()})
	return nil
}

// Define defines the domain again, shut off, over the disk Release kept.
func (d *Driver) Define(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("Define", err) }()
	if err := d.enter(ctx, "Define"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: define: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom := d.domains[spec.ID]; dom != nil {
		if dom.state == hypervisor.PowerShutOff {
			return nil
		}
		return fmt.Errorf("fake: define %s: domain is %s: %w", spec.ID, dom.state, hypervisor.ErrAlreadyExists)
	}
	kept := d.released[spec.ID]
	if kept == nil {
		return fmt.Errorf("fake: define %s: no disk kept: %w", spec.ID, hypervisor.ErrNotFound)
	}
	if err := d.ensureNetworksLocked(spec); err != nil {
		return fmt.Errorf("fake: define %s: %w", spec.ID, err)
	}
	dom := newDomain(spec)
	dom.disk, dom.size = kept.disk, kept.size
	d.domains[spec.ID] = dom
	delete(d.released, spec.ID)
	d.setLocked(dom, hypervisor.PowerShutOff, "unknown")
	return nil
}
