package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Rebuild, rescue and bundle. A rebuild is a Reshape whose new disk is a
// fresh overlay of another image: the old disk is kept as the original,
// and Unshape (the rollback) and DropOriginal (the end) serve it as they
// serve a resize. A rescue defines the domain to boot the rescue image
// over <id>.rescue.qcow2 with <id>.qcow2 as its second disk; an unrescue
// defines it as Create would and removes the rescue disk. A bundle writes
// <id>.qcow2, flattened and compressed, into a hidden directory of the
// image directory and renames it into place whole.

// rescueArg is added to the rescue image's kernel command line: the test
// guest (and any image that cares) boots its rescue system on it.
const rescueArg = "flotilla.rescue=1"

// RebuildDisk: see hypervisor.Driver.
func (d *Driver) RebuildDisk(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: rebuild disk: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	defer unlock()
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)
	p, img, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("rebuild disk", id, s)
	}
	if exists(paths.Original) {
		if !sameFile(paths.Original, paths.Disk) {
			if h, err := parseQcow2Header(paths.Disk); err == nil && h.backing == img.Disk {
				return nil // rebuilt already
			}
			return fmt.Errorf("libvirt: rebuild disk %s: an original is kept: %w", id, hypervisor.ErrInvalidState)
		}
		// Linked, but the fresh disk never took its place: start again.
		if err := os.Remove(paths.Original); err != nil {
			return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
		}
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("rebuild disk", id, s)
	}
	def, err := d.readDefinition(ctx, id, s, false)
	if err != nil {
		return err
	}
	if def.disk != paths.Disk {
		return fmt.Errorf("libvirt: rebuild disk %s: disk is %s (frozen?), not its overlay: %w", id, def.disk, hypervisor.ErrInvalidState)
	}
	f, err := os.CreateTemp(d.cfg.DiskDir, "."+id+".reshape-*.qcow2")
	if err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	tmp := f.Name()
	f.Close()
	defer func() { _ = removeIfExists(tmp) }()
	if err := createOverlay(ctx, img.Disk, tmp, spec.DiskGiB); err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	if err := d.redefineGuest(ctx, spec, p); err != nil {
		return wrapErr("rebuild disk", id, err)
	}
	if err := os.Link(paths.Disk, paths.Original); err != nil {
		return fmt.Errorf("libvirt: rebuild disk %s: keeping the old disk: %w", id, err)
	}
	if err := os.Rename(tmp, paths.Disk); err != nil {
		_ = os.Remove(paths.Original)
		return fmt.Errorf("libvirt: rebuild disk %s: %w", id, err)
	}
	d.instanceLog(id).Info("disk rebuilt (old disk kept)", "image", spec.Image)
	return nil
}

// definedDisks lists the disk files of the domain's persistent definition, in order.
func (d *Driver) definedDisks(ctx context.Context, id string, s domainState) ([]string, error) {
	var raw string
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		raw, err = l.DomainGetXMLDesc(s.dom, golibvirt.DomainXMLInactive)
		return err
	})
	if err != nil {
		return nil, wrapErr("read definition of", id, err)
	}
	var x domainXML
	if err := xml.Unmarshal([]byte(raw), &x); err != nil {
		return nil, fmt.Errorf("libvirt: parse definition of %s: %w", id, err)
	}
	var out []string
	for _, dk := range x.Devices.Disks {
		out = append(out, dk.Source.File)
	}
	return out, nil
}

// RescueDomain: see hypervisor.Driver.
func (d *Driver) RescueDomain(ctx context.Context, spec hypervisor.DomainSpec, rescueImage string) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: rescue: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: rescue %s: %w", id, err)
	}
	defer unlock()
	rimg, err := resolveImage(d.cfg.ImageDir, rescueImage)
	if err != nil {
		return fmt.Errorf("libvirt: rescue %s: %w", id, err)
	}
	p, _, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: rescue %s: %w", id, err)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("rescue", id, s)
	}
	disks, err := d.definedDisks(ctx, id, s)
	if err != nil {
		return err
	}
	if len(disks) > 0 && disks[0] == p.Paths.Rescue {
		return nil // rescued already
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("rescue", id, s)
	}
	if len(disks) == 0 || disks[0] != p.Paths.Disk {
		return fmt.Errorf("libvirt: rescue %s: disk is not its overlay (frozen?): %w", id, hypervisor.ErrInvalidState)
	}
	if err := createOverlay(ctx, rimg.Disk, p.Paths.Rescue, 0); err != nil {
		return fmt.Errorf("libvirt: rescue %s: %w", id, err)
	}
	rimg.Cmdline = strings.TrimSpace(rimg.Cmdline + " " + rescueArg)
	p.Image, p.Rescue, p.Seed = rimg, true, ""
	if err := d.define(ctx, p, p.Paths.Disk); err != nil {
		_ = removeIfExists(p.Paths.Rescue)
		return wrapErr("rescue", id, err)
	}
	d.instanceLog(id).Info("domain defined to boot its rescue system", "rescue_image", rescueImage)
	return nil
}

// UnrescueDomain: see hypervisor.Driver.
func (d *Driver) UnrescueDomain(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: unrescue: %w", err)
	}
	id := spec.ID
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: unrescue %s: %w", id, err)
	}
	defer unlock()
	p, _, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: unrescue %s: %w", id, err)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("unrescue", id, s)
	}
	disks, err := d.definedDisks(ctx, id, s)
	if err != nil {
		return err
	}
	rescued := len(disks) > 0 && disks[0] == p.Paths.Rescue
	if !rescued {
		// Not rescued, or redefined already and the rescue disk left to remove.
		return removeIfExists(p.Paths.Rescue)
	}
	if s.state != hypervisor.PowerShutOff {
		return errState("unrescue", id, s)
	}
	if err := d.redefineGuest(ctx, spec, p); err != nil {
		return wrapErr("unrescue", id, err)
	}
	if err := removeIfExists(p.Paths.Rescue); err != nil {
		return fmt.Errorf("libvirt: unrescue %s: %w", id, err)
	}
	d.instanceLog(id).Info("domain defined over its own disk again")
	return nil
}

// bundleSource names, in a bundled image's directory, the instance and the
// bundle (its token) it was made by: a BundleDisk retried after it renamed
// the image in succeeds; another bundle into that name does not.
const bundleSource = ".bundled-from"

// BundleDisk: see hypervisor.Driver.
func (d *Driver) BundleDisk(ctx context.Context, id, name, token string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: bundle: %w", err)
	}
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("libvirt: bundle: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: bundle %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)
	dest := filepath.Join(d.cfg.ImageDir, name)
	source := id + " " + token
	if src, err := os.ReadFile(filepath.Join(dest, bundleSource)); err == nil && string(src) == source {
		return nil // bundled already
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("libvirt: bundle %s: image %q: %w", id, name, hypervisor.ErrAlreadyExists)
	}
	s, err := d.observe(ctx, id)
	if err != nil {
		return err
	}
	if !s.found || s.state != hypervisor.PowerShutOff {
		return errState("bundle", id, s)
	}
	def, err := d.readDefinition(ctx, id, s, false)
	if err != nil {
		return err
	}
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)
	if def.disk != paths.Disk {
		return fmt.Errorf("libvirt: bundle %s: disk is %s (frozen?), not its overlay: %w", id, def.disk, hypervisor.ErrInvalidState)
	}
	// What an earlier attempt left (an agent killed mid-copy) goes first.
	stale, _ := filepath.Glob(filepath.Join(d.cfg.ImageDir, bundlePrefix(id)+"*"))
	for _, dir := range stale {
		_ = os.RemoveAll(dir)
	}
	started := time.Now()
	tmp, err := os.MkdirTemp(d.cfg.ImageDir, bundlePrefix(id)+name+"-")
	if err != nil {
		return fmt.Errorf("libvirt: bundle %s: %w", id, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("libvirt: bundle %s: %w", id, err)
	}
	// Flattened (no backing file) and compressed: the image stands alone.
	if _, err := runQemuImg(ctx, "convert", "-q", "-c", "-f", "qcow2", "-O", "qcow2", paths.Disk, filepath.Join(tmp, "disk.qcow2")); err != nil {
		return fmt.Errorf("libvirt: bundle %s: %w", id, err)
	}
	// A kernel-booted image keeps booting the same way.
	img := def.params.Image
	for _, f := range []struct{ from, to string }{{img.Kernel, "vmlinuz"}, {img.Initrd, "initrd.img"}} {
		if f.from == "" {
			continue
		}
		if err := copyFile(f.from, filepath.Join(tmp, f.to)); err != nil {
			return fmt.Errorf("libvirt: bundle %s: %w", id, err)
		}
	}
	if img.Cmdline != "" {
		if err := os.WriteFile(filepath.Join(tmp, "cmdline"), []byte(img.Cmdline), 0o644); err != nil {
			return fmt.Errorf("libvirt: bundle %s: %w", id, err)
		}
	}
	for f, content := range map[string]string{bundleSource: source, ".complete": ""} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("libvirt: bundle %s: %w", id, err)
		}
	}
	if err := os.Rename(tmp, dest); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("libvirt: bundle %s: image %q: %w", id, name, hypervisor.ErrAlreadyExists)
		}
		return fmt.Errorf("libvirt: bundle %s: %w", id, err)
	}
	log.Info("disk bundled into an image", "image", name, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// bundlePrefix starts the names of the hidden directories a bundle of
// instance id writes its image in before renaming it into place.
func bundlePrefix(id string) string { return ".bundle-" + id + "." }

// removeStaleBundles removes, when the agent starts (no bundle runs), what
// bundles of this agent's instances (a disk in its disk directory) left
// half-written: an agent killed mid-copy leaves no image behind.
func (d *Driver) removeStaleBundles() {
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.ImageDir, ".bundle-*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), ".bundle-")
		id, _, ok := strings.Cut(rest, ".")
		if !ok || !exists(pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id).Disk) {
			continue // another agent's (image directories may be shared)
		}
		if err := os.RemoveAll(dir); err != nil {
			d.log.Warn("removing a half-written bundle failed", "dir", dir, "err", err)
			continue
		}
		d.log.Info("half-written bundle removed", "dir", dir, "instance", id)
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
