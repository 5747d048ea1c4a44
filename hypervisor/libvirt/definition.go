package libvirt

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"strconv"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The resize methods change which file a domain's disk is, and its shape,
// without a spec in hand (FreezeDisk, ThawDisk know only the id). They read
// what is defined, and write it back through buildDomain, the builder
// Create uses, so a definition never holds anything Create would not write.

// definition is what the resize methods read of a defined domain.
type definition struct {
	params domainParams // enough to rebuild it with buildDomain
	disk   string       // the disk's source file
}

// readDefinition reads the domain's persistent (inactive) definition, or
// with live set the running one.
func (d *Driver) readDefinition(ctx context.Context, id string, s domainState, live bool) (definition, error) {
	flags := golibvirt.DomainXMLInactive
	if live {
		flags = 0
	}
	var raw string
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		raw, err = l.DomainGetXMLDesc(s.dom, flags)
		return err
	})
	if err != nil {
		return definition{}, wrapErr("read definition of", id, err)
	}
	return parseDefinition(d.cfg, id, raw)
}

func parseDefinition(cfg Config, id, raw string) (definition, error) {
	var x domainXML
	if err := xml.Unmarshal([]byte(raw), &x); err != nil {
		return definition{}, fmt.Errorf("libvirt: parse definition of %s: %w", id, err)
	}
	lay := layoutFor(cfg.DomainType)
	var disk, seed string
	for _, dk := range x.Devices.Disks {
		switch {
		case dk.Target.Dev == lay.DiskDev && disk == "":
			disk = dk.Source.File
		case dk.Target.Dev == lay.SeedDev && seed == "" && dk.ReadOnly != nil:
			seed = dk.Source.File
		default:
			return definition{}, fmt.Errorf("libvirt: definition of %s has a disk %s besides its own and its seed: %w", id, dk.Target.Dev, hypervisor.ErrInvalidState)
		}
	}
	if disk == "" {
		return definition{}, fmt.Errorf("libvirt: definition of %s has no disk %s: %w", id, lay.DiskDev, hypervisor.ErrInvalidState)
	}
	nics, err := nicsFromMetadata(x.Metadata)
	if err != nil {
		return definition{}, fmt.Errorf("libvirt: definition of %s: %w", id, err)
	}
	return definition{
		params: domainParams{
			DomainType: cfg.DomainType,
			ID:         id,
			Title:      x.Title,
			VCPUs:      x.VCPU,
			MemoryMiB:  kib(x.Memory) >> 10,
			Image:      image{Kernel: x.OS.Kernel, Initrd: x.OS.Initrd, Cmdline: withoutIPArg(x.OS.Cmdline, nics, id)},
			Paths:      pathsFor(cfg.DiskDir, cfg.RunDir, id),
			NICs:       nics,
			Seed:       seed,
		},
		disk: disk,
	}, nil
}

// define writes the domain's persistent definition from p with its disk at
// disk (while it runs, the live one is untouched).
func (d *Driver) define(ctx context.Context, p domainParams, disk string) error {
	p.Paths.Disk = disk
	domXML, err := marshalDomain(buildDomain(p))
	if err != nil {
		return err
	}
	return d.call(ctx, func(l *golibvirt.Libvirt) error {
		_, err := l.DomainDefineXML(domXML)
		return err
	})
}

// redefineGuest writes the domain's persistent definition from p over its
// overlay, with the seed and networks p's NICs need (Reshape, Unshape);
// reservations its NICs no longer hold are dropped.
func (d *Driver) redefineGuest(ctx context.Context, spec hypervisor.DomainSpec, p domainParams) error {
	if err := writeGuestSeed(p, spec); err != nil {
		return err
	}
	if err := d.define(ctx, p, p.Paths.Disk); err != nil {
		return fmt.Errorf("redefine: %w", err)
	}
	// Defined first (see ensureDefinedNetworks); the boot ensures them again.
	if err := d.ensureDefinedNetworks(ctx, spec.ID, p.NICs); err != nil {
		d.instanceLog(spec.ID).Warn("redefine: networks not ready yet; the boot will try again", "err", err)
	}
	if err := d.gcNetworks(ctx); err != nil {
		d.instanceLog(spec.ID).Warn("cleaning up networks after a redefinition failed", "err", err)
	}
	return nil
}

// specParams is the definition spec asks for (Create's, ImportDomain's, and the resize methods').
func (d *Driver) specParams(spec hypervisor.DomainSpec) (domainParams, image, error) {
	img, err := resolveImage(d.cfg.ImageDir, spec.Image)
	if err != nil {
		return domainParams{}, image{}, err
	}
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, spec.ID)
	p := domainParams{
		DomainType: d.cfg.DomainType,
		ID:         spec.ID,
		Title:      spec.Name,
		VCPUs:      spec.VCPUs,
		MemoryMiB:  spec.MemoryMiB,
		Image:      img,
		Paths:      paths,
		NICs:       spec.NICs,
	}
	if wantsSeed(spec) {
		p.Seed = paths.Seed
	}
	return p, img, nil
}

// atShape reports whether def is defined at p's vCPUs and memory over disk.
func atShape(def definition, p domainParams, disk string) bool {
	return def.params.VCPUs == p.VCPUs && def.params.MemoryMiB == p.MemoryMiB && def.disk == disk
}

// diskBytes is the size a spec's disk gets: DiskGiB, or the image's own
// size when it is 0.
func diskBytes(ctx context.Context, spec hypervisor.DomainSpec, img image) (uint64, error) {
	if spec.DiskGiB > 0 {
		return spec.DiskGiB << 30, nil
	}
	return virtualSize(ctx, img.Disk)
}

// growFile grows the qcow2 file at path (not in use by a QEMU) to bytes;
// a file already that large is left alone, a larger one is ErrInvalidSpec.
func growFile(ctx context.Context, path string, bytes uint64) error {
	have, err := virtualSize(ctx, path)
	if err != nil {
		return err
	}
	switch {
	case have == bytes:
		return nil
	case have > bytes:
		return fmt.Errorf("disk of %d bytes larger than the %d asked for: %w", have, bytes, hypervisor.ErrInvalidSpec)
	}
	_, err = runQemuImg(ctx, "resize", "-q", "-f", "qcow2", path, strconv.FormatUint(bytes, 10))
	return err
}

// sameFile reports whether a and b are the same file (hard links of one).
func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
