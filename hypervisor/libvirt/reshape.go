package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// A resize that stays on its host: Reshape keeps <id>.qcow2 as it is as
// <id>.original.qcow2 (a hard link: the very file, byte for byte) and puts a
// sparse copy, grown, in its place; Unshape renames the original back over
// the copy; DropOriginal removes it. The domain's definition always names
// <id>.qcow2. Each step leaves a state a retry can finish: the define comes
// before the files change, and an original that is still the disk itself
// (link made, copy not yet renamed in) is an interrupted Reshape.

// Reshape: see hypervisor.Driver.
func (d *Driver) Reshape(ctx context.Context, spec hypervisor.DomainSpec) error {
	return d.reshape(ctx, spec, false)
}

// UpgradeDisk: see hypervisor.Driver. An upgrade is a reshape whose new
// disk, when the image changes, is a fresh overlay of the new image rather
// than a copy of the old disk; Unshape and DropOriginal end it either way.
func (d *Driver) UpgradeDisk(ctx context.Context, spec hypervisor.DomainSpec) error {
	return d.reshape(ctx, spec, true)
}

func (d *Driver) reshape(ctx context.Context, spec hypervisor.DomainSpec, upgrade bool) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: reshape: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)

	p, img, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("reshape", id, s)
	}
	def, err := d.readDefinition(ctx, id, s, false)
	if err != nil {
		return err
	}
	// The image a definition boots is known by its kernel (the images that
	// boot from their own disk are told apart by their backing file below).
	fresh := upgrade && (def.params.Image.Kernel != img.Kernel || !backedBy(ctx, paths.Disk, img.Disk))
	if exists(paths.Original) {
		if !sameFile(paths.Original, paths.Disk) {
			if atShape(def, p, paths.Disk) && !fresh {
				log.Debug("reshape: already reshaped")
				return nil
			}
			return fmt.Errorf("libvirt: reshape %s: an original of another resize is kept: %w", id, hypervisor.ErrInvalidState)
		}
		// Linked, but the copy never took its place: start again.
		if err := os.Remove(paths.Original); err != nil {
			return fmt.Errorf("libvirt: reshape %s: %w", id, err)
		}
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("reshape", id, s)
	}
	if def.disk != paths.Disk {
		return fmt.Errorf("libvirt: reshape %s: disk is %s (frozen?), not its overlay: %w", id, def.disk, hypervisor.ErrInvalidState)
	}
	want, err := diskBytes(ctx, spec, img)
	if err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	if have, err := virtualSize(ctx, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	} else if want < have && !fresh {
		return fmt.Errorf("libvirt: reshape %s: disk of %d bytes below its size of %d: %w", id, want, have, hypervisor.ErrInvalidSpec)
	}

	started := time.Now()
	for _, pat := range tempPatterns(d.cfg.DiskDir, id)[1:] {
		stale, _ := filepath.Glob(pat)
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	f, err := os.CreateTemp(d.cfg.DiskDir, "."+id+".reshape-*.qcow2")
	if err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	tmp := f.Name()
	f.Close()
	defer func() { _ = removeIfExists(tmp) }()
	if fresh {
		// A new image version: a fresh disk of it; the old one is kept.
		_ = os.Remove(tmp)
		if err := createOverlay(ctx, img.Disk, tmp, spec.DiskGiB); err != nil {
			return fmt.Errorf("libvirt: upgrade %s: %w", id, err)
		}
	} else if err := sparseCopy(ctx, paths.Disk, tmp); err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	if err := growFile(ctx, tmp, want); err != nil && !fresh {
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	if err := d.redefineGuest(ctx, spec, p); err != nil {
		return wrapErr("reshape", id, err)
	}
	if err := os.Link(paths.Disk, paths.Original); err != nil {
		return fmt.Errorf("libvirt: reshape %s: keeping the original: %w", id, err)
	}
	if err := os.Rename(tmp, paths.Disk); err != nil {
		_ = os.Remove(paths.Original)
		return fmt.Errorf("libvirt: reshape %s: %w", id, err)
	}
	log.Info("domain reshaped (original kept)", "vcpus", spec.VCPUs, "memory_mib", spec.MemoryMiB,
		"disk_bytes", want, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// sparseCopy copies src to dst (which may exist) keeping holes, sharing
// extents where the file system can (cp --reflink=auto --sparse=always).
func sparseCopy(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", "--", src, dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("copy disk: %w", ctx.Err())
		}
		return fmt.Errorf("copy disk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Unshape: see hypervisor.Driver.
func (d *Driver) Unshape(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: unshape: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: unshape %s: %w", id, err)
	}
	defer unlock()
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)

	p, _, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: unshape %s: %w", id, err)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("unshape", id, s)
	}
	def, err := d.readDefinition(ctx, id, s, false)
	if err != nil {
		return err
	}
	if !exists(paths.Original) {
		if atShape(def, p, paths.Disk) {
			return nil
		}
		return fmt.Errorf("libvirt: unshape %s: no original kept: %w", id, hypervisor.ErrInvalidState)
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("unshape", id, s)
	}
	if def.disk != paths.Disk {
		return fmt.Errorf("libvirt: unshape %s: disk is %s (frozen?), not its overlay: %w", id, def.disk, hypervisor.ErrInvalidState)
	}
	if err := d.redefineGuest(ctx, spec, p); err != nil {
		return wrapErr("unshape", id, err)
	}
	if err := os.Rename(paths.Original, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: unshape %s: %w", id, err)
	}
	d.instanceLog(id).Info("domain unshaped (original disk back)", "vcpus", spec.VCPUs, "memory_mib", spec.MemoryMiB)
	return nil
}

// DropOriginal: see hypervisor.Driver.
func (d *Driver) DropOriginal(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: drop original: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: drop original of %s: %w", id, err)
	}
	defer unlock()
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)
	if !exists(paths.Original) {
		return nil
	}
	if err := os.Remove(paths.Original); err != nil {
		return fmt.Errorf("libvirt: drop original of %s: %w", id, err)
	}
	d.instanceLog(id).Info("original disk dropped")
	return nil
}

// backedBy reports whether overlay's backing file is backing (false when
// it cannot tell).
func backedBy(ctx context.Context, overlay, backing string) bool {
	out, err := runQemuImg(ctx, "info", "--output=json", "-U", overlay)
	if err != nil {
		return false
	}
	var info struct {
		Full string `json:"full-backing-filename"`
	}
	if json.Unmarshal([]byte(out), &info) != nil {
		return false
	}
	a, errA := filepath.EvalSymlinks(info.Full)
	b, errB := filepath.EvalSymlinks(backing)
	return errA == nil && errB == nil && a == b
}
