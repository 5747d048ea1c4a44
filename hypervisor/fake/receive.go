package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// staged is an incoming disk (ReceiveDisk) not yet adopted.
type staged struct {
	spec  hypervisor.DomainSpec
	layer hypervisor.DiskLayer // DiskWhole or DiskBase: what base holds
	base  []byte               // with the received mid merged into it, if any
	top   []byte               // the disk base and the received top make; nil: no top
	// mid is the mid layer merged into base as received (nil: none), and
	// preMid the base before it: a mid received again is compared with it
	// (the same: nothing to do) or merged over preMid instead.
	mid, preMid []byte
}

// StagedDisk is what ReceiveDisk has staged for an instance (see Staged).
type StagedDisk struct {
	Spec  hypervisor.DomainSpec // of the last ReceiveDisk
	Layer hypervisor.DiskLayer  // DiskWhole or DiskBase
	Mid   bool                  // a mid was received and merged into the base
	Top   bool                  // a top was received over the base
	Disk  []byte                // the disk AdoptDisk would make (a copy)
}

// Staged reports what is staged for id, and false when nothing is.
func (d *Driver) Staged(id string) (StagedDisk, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.staged[id]
	if st == nil {
		return StagedDisk{}, false
	}
	disk := st.base
	if st.top != nil {
		disk = st.top
	}
	return StagedDisk{Spec: st.spec, Layer: st.layer, Mid: st.mid != nil, Top: st.top != nil, Disk: bytes.Clone(disk)}, true
}

// ReceiveDisk reads disk to its end and stages it as layer of spec's
// incoming disk. A whole disk or a base replaces whatever was staged; a
// top needs a staged base or whole disk (else ErrInvalidState), must be one
// made over it (else ErrInvalidSpec), and replaces an earlier top. A mid is
// checked as a top and merged into the staged base at once (dropping a
// staged top, which was made over the base without it); the same mid
// received again changes nothing, another one replaces it. A domain of the id
// is ErrAlreadyExists. Nothing changes when reading fails.
func (d *Driver) ReceiveDisk(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, disk io.Reader) (err error) {
	defer func() { err = d.leave("ReceiveDisk", err) }()
	if err := d.enter(ctx, "ReceiveDisk"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: receive disk: %w", err)
	}
	if err := checkLayer(layer); err != nil {
		return fmt.Errorf("fake: receive disk of %s: %w", spec.ID, err)
	}
	if len(d.images) > 0 && !d.images[spec.Image] {
		return fmt.Errorf("fake: receive disk of %s: image %q: %w", spec.ID, spec.Image, hypervisor.ErrImageNotFound)
	}
	limit := d.importLimit(spec)
	readLimit := limit
	if layer == hypervisor.DiskTop || layer == hypervisor.DiskMid {
		// The top's framing: its header and 12 bytes per block.
		readLimit += 1<<10 + 12*(limit/topBlock+1)
	}
	// Read without holding the lock: the bytes may come slowly off the network.
	data, err := io.ReadAll(io.LimitReader(disk, readLimit+1))
	if err != nil {
		return fmt.Errorf("fake: receive %s disk of %s: reading: %w", layerName(layer), spec.ID, err)
	}
	if int64(len(data)) > readLimit {
		return fmt.Errorf("fake: receive %s disk of %s: larger than %d bytes: %w", layerName(layer), spec.ID, readLimit, hypervisor.ErrInvalidSpec)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: receive disk of %s: %w", spec.ID, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("fake: ReceiveDisk: %w", ErrClosed)
	}
	if dom := d.domains[spec.ID]; dom != nil {
		return fmt.Errorf("fake: receive disk of %s: domain exists and is %s: %w", spec.ID, dom.state, hypervisor.ErrAlreadyExists)
	}
	if layer == hypervisor.DiskWhole || layer == hypervisor.DiskBase {
		d.staged[spec.ID] = &staged{spec: spec, layer: layer, base: data}
		return nil
	}
	st := d.staged[spec.ID]
	if st == nil {
		return fmt.Errorf("fake: receive %s disk of %s: no base staged: %w", layer, spec.ID, hypervisor.ErrInvalidState)
	}
	if layer == hypervisor.DiskMid {
		if st.mid != nil && bytes.Equal(st.mid, data) {
			st.spec = spec
			return nil // a retry: merged already
		}
		under := st.base
		if st.mid != nil {
			under = st.preMid
		}
		merged, err := applyTop(under, data, limit)
		if err != nil {
			return fmt.Errorf("fake: receive mid disk of %s: %w: %w", spec.ID, err, hypervisor.ErrInvalidSpec)
		}
		st.spec, st.preMid, st.mid, st.base, st.top = spec, under, data, merged, nil
		return nil
	}
	merged, err := applyTop(st.base, data, limit)
	if err != nil {
		return fmt.Errorf("fake: receive top disk of %s: %w: %w", spec.ID, err, hypervisor.ErrInvalidSpec)
	}
	st.spec, st.top = spec, merged
	return nil
}

func (d *Driver) importLimit(spec hypervisor.DomainSpec) int64 {
	limit := d.opts.MaxImportBytes
	if spec.DiskGiB > 0 && int64(spec.DiskGiB)<<30 < limit {
		limit = int64(spec.DiskGiB) << 30
	}
	return limit
}

func layerName(l hypervisor.DiskLayer) string {
	if l == hypervisor.DiskWhole {
		return "whole"
	}
	return string(l)
}

// AdoptDisk makes the staged disk (the base with the top applied) the
// instance's disk, of spec.DiskGiB, and defines the domain shut off at
// spec. A domain already defined at spec's shape, shut off, with nothing
// staged is success; another domain of the id is ErrAlreadyExists; nothing
// staged is ErrInvalidState.
func (d *Driver) AdoptDisk(ctx context.Context, spec hypervisor.DomainSpec) (err error) {
	defer func() { err = d.leave("AdoptDisk", err) }()
	if err := d.enter(ctx, "AdoptDisk"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: adopt disk: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.staged[spec.ID]
	if dom := d.domains[spec.ID]; dom != nil {
		if st == nil && dom.state == hypervisor.PowerShutOff && sameShape(dom.spec, spec) {
			return nil // adopted already
		}
		return fmt.Errorf("fake: adopt disk of %s: domain exists and is %s: %w", spec.ID, dom.state, hypervisor.ErrAlreadyExists)
	}
	if st == nil {
		return fmt.Errorf("fake: adopt disk of %s: nothing staged: %w", spec.ID, hypervisor.ErrInvalidState)
	}
	disk := st.base
	if st.top != nil {
		disk = st.top
	}
	if spec.DiskGiB > 0 && int64(len(disk)) > int64(spec.DiskGiB)<<30 {
		return fmt.Errorf("fake: adopt disk of %s: staged disk of %d bytes larger than %d GiB: %w", spec.ID, len(disk), spec.DiskGiB, hypervisor.ErrInvalidSpec)
	}
	if err := d.ensureNetworksLocked(spec); err != nil {
		return fmt.Errorf("fake: adopt disk of %s: %w", spec.ID, err)
	}
	dom := newDomain(spec)
	dom.disk = disk
	if spec.DiskGiB > 0 {
		dom.size = int64(spec.DiskGiB) << 30
	}
	d.domains[spec.ID] = dom
	delete(d.staged, spec.ID)
	d.setLocked(dom, hypervisor.PowerShutOff, "unknown")
	return nil
}

// sameShape reports whether a domain defined at a has the shape b asks
// for (the display name does not count).
func sameShape(a, b hypervisor.DomainSpec) bool {
	return a.ID == b.ID && a.VCPUs == b.VCPUs && a.MemoryMiB == b.MemoryMiB && a.DiskGiB == b.DiskGiB && a.Image == b.Image
}
