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
	netDone, err := d.prepareGuest(ctx, spec, params)
	if err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return fmt.Errorf("libvirt: create %s: %w", spec.ID, err)
	}

	// Define and boot in one goroutine so that, if ctx ends first, the
	// rollback can wait for libvirt to finish before undoing its work.
	l, err := d.conn.get()
	if err != nil {
		netDone()
		d.rollbackCreate(log, spec.ID, paths)
		return wrapErr("create", spec.ID, err)
	}
	done := make(chan error, 1)
	go func() {
		err := defineAndStart(l, domXML)
		netDone() // defined (or not): the definition speaks for its NICs now
		done <- err
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

func defineAndStart(l *golibvirt.Libvirt, domXML string) error {
	dom, err := l.DomainDefineXML(domXML)
	if err != nil {
		return fmt.Errorf("define: %w", err)
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

// prepareGuest makes what a domain defined from p needs besides its disk:
// the seed image, and the managed networks with the NICs' reservations.
// The caller calls done once the domain is defined or has failed to be.
func (d *Driver) prepareGuest(ctx context.Context, spec hypervisor.DomainSpec, p domainParams) (done func(), err error) {
	if p.Seed != "" {
		if err := writeSeed(p.Seed, spec); err != nil {
			return nil, err
		}
	}
	return d.ensureNetworks(ctx, spec.ID, p.NICs)
}
