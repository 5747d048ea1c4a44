package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// rollbackTimeout bounds the clean-up after a failed Create, which runs even
// when the caller's context has ended.
const rollbackTimeout = 30 * time.Second

// Create makes the disk overlay, defines the persistent domain and boots it.
// A domain of the same id that is already running counts as success, so a
// retried Create is harmless; any other existing domain is ErrAlreadyExists.
// On failure everything Create made is removed again.
func (d *Driver) Create(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: create: %w", err)
	}
	log := d.instanceLog(spec.ID)
	unlock, err := d.locks.lock(ctx, spec.ID)
	if err != nil {
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}
	handedOff := false // true once a background rollback owns the lock
	defer func() {
		if !handedOff {
			unlock()
		}
	}()

	s, err := d.observe(ctx, spec.ID)
	if err != nil {
		return err
	}
	switch s.state {
	case hypervisor.PowerNoDomain:
	case hypervisor.PowerRunning:
		log.Debug("create: domain already running")
		return nil
	default:
		return fmt.Errorf("libvirt: create %s: domain exists and is %s: %w", spec.ID, s.state, hypervisor.ErrAlreadyExists)
	}

	params, img, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}
	paths := params.Paths
	domXML, err := marshalDomain(buildDomain(params))
	if err != nil {
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}

	started := time.Now()
	if err := createOverlay(ctx, img.Disk, paths.Disk, spec.DiskGiB); err != nil {
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}
	if err := writeGuestSeed(params, spec); err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}

	// Define and boot in one goroutine so that, if ctx ends first, the
	// rollback can wait for libvirt to finish before undoing its work.
	l, err := d.conn.get()
	if err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return wrapErr("create", spec.ID, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- defineAndStart(l, domXML, func() error { return d.ensureDefinedNetworks(ctx, spec.ID, params.NICs) })
	}()

	select {
	case err = <-done:
	case <-ctx.Done():
		handedOff = true
		go func() {
			defer unlock()
			if err := <-done; err != nil {
				d.rollbackCreate(log, spec.ID, paths)
				return
			}
			// The caller was told Create failed; keep that true.
			log.Warn("create finished after its context ended; removing it again")
			d.rollbackCreate(log, spec.ID, paths)
		}()
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, ctx.Err())
	}
	if err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return wrapErr("create", spec.ID, err)
	}
	log.Info("domain created and started", "image", spec.Image, "vcpus", spec.VCPUs,
		"memory_mib", spec.MemoryMiB, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// defineAndStart defines the domain, runs beforeStart, and starts it.
func defineAndStart(l *golibvirt.Libvirt, domXML string, beforeStart func() error) error {
	dom, err := l.DomainDefineXML(domXML)
	if err != nil {
		return fmt.Errorf("define: %w", err)
	}
	if err := beforeStart(); err != nil {
		return err
	}
	if err := l.DomainCreate(dom); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}

// rollbackCreate removes whatever a failed Create or ImportDomain left behind.
func (d *Driver) rollbackCreate(log *slog.Logger, id string, paths instancePaths) {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	if err := d.deleteDomain(ctx, id); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		log.Warn("create rollback: removing domain failed", "err", err)
	}
	if err := removeFiles(paths); err != nil {
		log.Warn("create rollback: removing files failed", "err", err)
	}
	if err := d.gcNetworks(ctx); err != nil {
		log.Warn("create rollback: cleaning up networks failed", "err", err)
	}
}

// writeGuestSeed writes the seed image a domain defined from p boots with.
func writeGuestSeed(p domainParams, spec hypervisor.DomainSpec) error {
	if p.Seed == "" {
		return nil
	}
	return writeSeed(p.Seed, spec)
}

// ensureDefinedNetworks makes the managed networks of a domain's NICs exist
// with its reservations. It runs once the domain is defined, never before:
// the definition is what tells a clean-up (this driver's, or another's on
// the same libvirtd) that the reservations are in use, so no clean-up
// between the two can take them away.
func (d *Driver) ensureDefinedNetworks(ctx context.Context, id string, nics []hypervisor.NIC) error {
	done, err := d.ensureNetworks(ctx, id, nics)
	if err != nil {
		return err
	}
	done()
	return nil
}
