package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The target side of a resize to another host: ReceiveDisk stages what
// arrives as .<id>.incoming-base.qcow2 (a base or a whole disk, an overlay
// of this host's image) and .<id>.incoming-top.qcow2 (a top, rebased onto
// the staged base); AdoptDisk merges them into <id>.qcow2 and defines the
// domain. A mid arrives as .<id>.incoming-mid.qcow2, rebased onto the staged
// base as a top is, and is merged into the staged base at once and removed:
// the staged base then is the source's base and mid, which the top that
// follows (made over the source's mid) is rebased onto in turn.

// ReceiveDisk: see hypervisor.Driver. The bytes go through receiveDisk into
// a temporary file, are checked as ImportDomain checks an overlay (a top:
// header first, then rebased onto the staged base, then the whole chain),
// and only then renamed into place. A mid is checked as a top and then
// committed into the staged base (qemu-img commit) and removed; the same
// mid received again writes the same data again, so a retry is harmless
// (and a top staged meanwhile, made over the same data, stays valid). A
// commit cut short leaves the staged base part merged: the caller's retry
// of the mid completes it.
func (d *Driver) ReceiveDisk(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, disk io.Reader) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: receive disk: %w", err)
	}
	if err := checkLayerName(layer); err != nil {
		return fmt.Errorf("libvirt: receive disk of %s: %w", spec.ID, err)
	}
	op := "receive " + layerWord(layer) + " disk of"
	unlock, err := d.locks.lock(ctx, spec.ID)
	if err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}
	defer unlock()
	log := d.instanceLog(spec.ID)

	s, err := d.observe(ctx, spec.ID)
	if err != nil {
		return err
	}
	if s.found {
		return fmt.Errorf("libvirt: %s %s: domain exists and is %s: %w", op, spec.ID, s.state, hypervisor.ErrAlreadyExists)
	}
	img, err := resolveImage(d.cfg.ImageDir, spec.Image)
	if err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}
	virtual, err := diskBytes(ctx, spec, img)
	if err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, spec.ID)
	if (layer == hypervisor.DiskTop || layer == hypervisor.DiskMid) && !exists(paths.IncomingBase) {
		return fmt.Errorf("libvirt: %s %s: no base staged: %w", op, spec.ID, hypervisor.ErrInvalidState)
	}

	started := time.Now()
	tmp, _, size, err := receiveDisk(d.cfg.DiskDir, spec.ID, disk, virtual+importSlack(virtual))
	if err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}
	defer func() {
		if err := removeIfExists(tmp); err != nil {
			log.Warn("receive: removing temporary disk failed", "path", tmp, "err", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}

	dest := paths.IncomingBase
	if layer == hypervisor.DiskTop || layer == hypervisor.DiskMid {
		dest = paths.IncomingTop
		if err := checkTop(ctx, tmp, paths.IncomingBase, virtual); err != nil {
			log.Warn("receive: refusing layer", "layer", layerWord(layer), "err", err)
			return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
		}
		if layer == hypervisor.DiskMid {
			if err := mergeMid(ctx, tmp, paths); err != nil {
				return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
			}
			log.Info("mid merged into the staged base", "bytes", size, "took", time.Since(started).Round(time.Millisecond))
			return nil
		}
	} else {
		named, err := checkOverlay(ctx, tmp, img.Disk, virtual)
		if err != nil {
			log.Warn("receive: refusing disk", "layer", layerWord(layer), "err", err)
			return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
		}
		if named != img.Disk {
			if _, err := runQemuImg(ctx, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, tmp); err != nil {
				return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
			}
		}
		// A mid or top staged before belongs to the base this one replaces.
		if err := errors.Join(removeIfExists(paths.IncomingMid), removeIfExists(paths.IncomingTop)); err != nil {
			return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
		}
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("libvirt: %s %s: %w", op, spec.ID, err)
	}
	log.Info("disk layer staged", "layer", layerWord(layer), "bytes", size, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// mergeMid stages the checked mid at tmp (rebased onto the staged base) as
// .<id>.incoming-mid.qcow2, commits it into the staged base, its immediate
// backing file (checked again first: never the image), and removes it.
func mergeMid(ctx context.Context, tmp string, paths instancePaths) error {
	if err := os.Rename(tmp, paths.IncomingMid); err != nil {
		return err
	}
	defer removeIfExists(paths.IncomingMid)
	if err := checkChain(ctx, paths.IncomingMid, paths.IncomingBase); err != nil {
		return err
	}
	if _, err := runQemuImg(ctx, "commit", "-q", "-f", "qcow2", paths.IncomingMid); err != nil {
		return fmt.Errorf("merging the mid into the staged base: %w", err)
	}
	return removeIfExists(paths.IncomingMid)
}

func layerWord(l hypervisor.DiskLayer) string {
	if l == hypervisor.DiskWhole {
		return "whole"
	}
	return string(l)
}

// checkTop checks a received top (untrusted) and points it at the staged
// base. The backing file its header names is the source host's base, a
// path that means nothing here: the header is checked in Go (qcow2, no
// external data file, no encryption, an absolute qcow2 backing file, size),
// the backing name replaced with `rebase -u` (which opens neither the old
// nor the new backing file), and then the file checked as an overlay of the
// staged base, the chain ending at the image.
func checkTop(ctx context.Context, path, base string, maxVirtual uint64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("received top: "+format+": %w", append(args, hypervisor.ErrInvalidSpec)...)
	}
	h, err := parseQcow2Header(path)
	if err != nil {
		return fmt.Errorf("received top: %w", err)
	}
	if len(h.backing) == 0 || h.backing[0] != '/' {
		return bad("backing file %q is not an absolute path", h.backing)
	}
	if h.backingFormat != "qcow2" {
		return bad("backing format %q, want qcow2", h.backingFormat)
	}
	if h.virtualSize > maxVirtual {
		return bad("virtual size %d bytes above %d", h.virtualSize, maxVirtual)
	}
	if _, err := runQemuImg(ctx, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", base, path); err != nil {
		return qemuImgErr(ctx, err)
	}
	if _, err := checkLayerFile(ctx, path, base, 2, maxVirtual); err != nil {
		return err
	}
	return nil
}

// AdoptDisk: see hypervisor.Driver. The staged top is committed into the
// staged base (qemu-img commit: its immediate backing file only), the base
// grown and renamed to <id>.qcow2, and the domain defined from Create's XML.
// A <id>.qcow2 with no domain and nothing staged is an adoption interrupted
// before the define, and is adopted.
func (d *Driver) AdoptDisk(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: adopt disk: %w", err)
	}
	unlock, err := d.locks.lock(ctx, spec.ID)
	if err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	defer unlock()
	log := d.instanceLog(spec.ID)
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, spec.ID)

	p, img, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	s, err := d.observe(ctx, spec.ID)
	if err != nil {
		return err
	}
	staged := exists(paths.IncomingBase)
	if s.found {
		if !staged && s.state == hypervisor.PowerShutOff {
			def, err := d.readDefinition(ctx, spec.ID, s, false)
			if err != nil {
				return err
			}
			if atShape(def, p, paths.Disk) {
				log.Debug("adopt: domain already adopted")
				return nil
			}
		}
		return fmt.Errorf("libvirt: adopt disk of %s: domain exists and is %s: %w", spec.ID, s.state, hypervisor.ErrAlreadyExists)
	}
	base := paths.IncomingBase
	if !staged {
		if !exists(paths.Disk) {
			return fmt.Errorf("libvirt: adopt disk of %s: nothing staged: %w", spec.ID, hypervisor.ErrInvalidState)
		}
		base = paths.Disk
	}
	want, err := diskBytes(ctx, spec, img)
	if err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	started := time.Now()
	if staged && exists(paths.IncomingTop) {
		if err := checkChain(ctx, paths.IncomingTop, paths.IncomingBase); err != nil {
			return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
		}
		if _, err := runQemuImg(ctx, "commit", "-q", "-f", "qcow2", paths.IncomingTop); err != nil {
			return fmt.Errorf("libvirt: adopt disk of %s: merging the top: %w", spec.ID, err)
		}
		if err := removeIfExists(paths.IncomingTop); err != nil {
			return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
		}
	}
	// A mid left by a ReceiveDisk cut short (which failed, and the caller
	// retried) is not part of the disk.
	if err := removeIfExists(paths.IncomingMid); err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	if err := growFile(ctx, base, want); err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	if base != paths.Disk {
		if err := os.Rename(base, paths.Disk); err != nil {
			return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
		}
	}
	// The seed and the networks are made on this host, as a move's are.
	if err := writeGuestSeed(p, spec); err != nil {
		return fmt.Errorf("libvirt: adopt disk of %s: %w", spec.ID, err)
	}
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		x, err := marshalDomain(buildDomain(p))
		if err != nil {
			return err
		}
		_, err = l.DomainDefineXML(x)
		return err
	})
	if err == nil {
		// Defined first: see ensureDefinedNetworks. The domain is defined
		// shut off, and booting it ensures its networks again: a failure
		// here is not this step's.
		if nerr := d.ensureDefinedNetworks(ctx, spec.ID, p.NICs); nerr != nil {
			log.Warn("adopt: networks not ready yet; the boot will try again", "err", nerr)
		}
	}
	if err != nil {
		// Stage the disk again, so that a retry finds it where it was;
		// unless the define went through after all (ctx ended first).
		rctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
		defer cancel()
		if now, oerr := d.observe(rctx, spec.ID); oerr == nil && !now.found {
			if rerr := os.Rename(paths.Disk, paths.IncomingBase); rerr != nil {
				log.Warn("adopt rollback: restaging the disk failed", "err", rerr)
			}
		}
		return wrapErr("adopt disk of", spec.ID, fmt.Errorf("define: %w", err))
	}
	log.Info("disk adopted (domain defined, shut off)", "vcpus", spec.VCPUs, "memory_mib", spec.MemoryMiB,
		"disk_bytes", want, "took", time.Since(started).Round(time.Millisecond))
	return nil
}
