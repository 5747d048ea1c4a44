package fake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// DiskContent is the disk Create gives instance id: size bytes derived from
// the id alone, so that a copy made elsewhere can be checked against it.
func DiskContent(id string, size int) []byte {
	out := make([]byte, 0, size+sha256.Size)
	var block [8]byte
	for i := uint64(0); len(out) < size; i++ {
		binary.BigEndian.PutUint64(block[:], i)
		sum := sha256.Sum256(append([]byte("flotilla-fake-disk:"+id+":"), block[:]...))
		out = append(out, sum[:]...)
	}
	return out[:size]
}

// diskLocked returns dom's disk. The slice is never modified afterwards
// (imports store a fresh one), so it may be handed out without copying.
func (d *Driver) diskLocked(dom *domain) []byte {
	if dom.disk == nil {
		dom.disk = DiskContent(dom.spec.ID, d.opts.DiskSize)
	}
	return dom.disk
}

// Disk returns a copy of the instance's disk, and false when there is no
// such domain.
func (d *Driver) Disk(id string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return nil, false
	}
	return bytes.Clone(d.diskLocked(dom)), true
}

// OpenDisk returns a reader over one layer of the domain's disk (see
// hypervisor.Driver): DiskWhole of an unfrozen, shut-off disk; DiskBase of
// a frozen one in any state; DiskMid of a refrozen one in any state, encoded
// as the blocks written between the two freezes; DiskTop of a frozen,
// shut-off one, encoded as the blocks written since the (last) freeze (see
// encodeTop).
func (d *Driver) OpenDisk(ctx context.Context, id string, layer hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	if err := d.enter(ctx, "OpenDisk"); err != nil {
		return nil, 0, err
	}
	if err := checkLayer(layer); err != nil {
		return nil, 0, fmt.Errorf("fake: open disk of %s: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked("open disk of", id)
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	switch layer {
	case hypervisor.DiskBase:
		if dom.base == nil {
			return nil, 0, fmt.Errorf("fake: open base of %s: disk not frozen: %w", id, hypervisor.ErrInvalidState)
		}
		out = dom.base
	case hypervisor.DiskMid:
		if dom.mid == nil {
			return nil, 0, fmt.Errorf("fake: open mid of %s: disk not refrozen: %w", id, hypervisor.ErrInvalidState)
		}
		out = encodeTop(dom.base, dom.mid)
	default:
		// Only shut off: a saved domain's memory image would not travel
		// with its disk, and a live one's disk is still changing.
		if dom.state != hypervisor.PowerShutOff {
			return nil, 0, errState("open disk of", dom)
		}
		switch {
		case layer == hypervisor.DiskWhole && dom.base != nil:
			return nil, 0, fmt.Errorf("fake: open whole disk of %s: disk frozen (open base and top): %w", id, hypervisor.ErrInvalidState)
		case layer == hypervisor.DiskTop && dom.base == nil:
			return nil, 0, fmt.Errorf("fake: open top of %s: disk not frozen: %w", id, hypervisor.ErrInvalidState)
		case layer == hypervisor.DiskTop && dom.mid != nil:
			out = encodeTop(dom.mid, d.diskLocked(dom))
		case layer == hypervisor.DiskTop:
			out = encodeTop(dom.base, d.diskLocked(dom))
		default:
			out = d.diskLocked(dom)
		}
	}
	return io.NopCloser(bytes.NewReader(out)), int64(len(out)), nil
}

func checkLayer(layer hypervisor.DiskLayer) error {
	switch layer {
	case hypervisor.DiskWhole, hypervisor.DiskBase, hypervisor.DiskMid, hypervisor.DiskTop:
		return nil
	}
	return fmt.Errorf("unknown disk layer %q: %w", layer, hypervisor.ErrInvalidSpec)
}

// ImportDomain reads disk to its end and defines the domain shut off with
// it. An existing domain that is shut off with the same spec and the same
// disk is success; any other is ErrAlreadyExists. Nothing is kept when
// reading fails.
func (d *Driver) ImportDomain(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
	if err := d.enter(ctx, "ImportDomain"); err != nil {
		return err
	}
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("fake: import: %w", err)
	}
	if len(d.images) > 0 && !d.images[spec.Image] {
		return fmt.Errorf("fake: import %s: image %q: %w", spec.ID, spec.Image, hypervisor.ErrImageNotFound)
	}
	limit := d.opts.MaxImportBytes
	if spec.DiskGiB > 0 && int64(spec.DiskGiB)<<30 < limit {
		limit = int64(spec.DiskGiB) << 30
	}
	// Read without holding the lock: the bytes may come slowly off the network.
	data, err := io.ReadAll(io.LimitReader(disk, limit+1))
	if err != nil {
		return fmt.Errorf("fake: import %s: reading disk: %w", spec.ID, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("fake: import %s: disk larger than %d bytes: %w", spec.ID, limit, hypervisor.ErrInvalidSpec)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: import %s: %w", spec.ID, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("fake: ImportDomain: %w", ErrClosed)
	}
	if dom := d.domains[spec.ID]; dom != nil {
		if dom.state == hypervisor.PowerShutOff && dom.spec.Equal(spec) && bytes.Equal(d.diskLocked(dom), data) {
			return nil // a retried import of what is already here
		}
		return fmt.Errorf("fake: import %s: domain exists and is %s: %w", spec.ID, dom.state, hypervisor.ErrAlreadyExists)
	}
	if err := d.ensureNetworksLocked(spec); err != nil {
		return fmt.Errorf("fake: import %s: %w", spec.ID, err)
	}
	dom := newDomain(spec)
	dom.disk = data
	d.domains[spec.ID] = dom
	// libvirt reports a defined, never started domain as shut off for an
	// "unknown" reason; the fake says the same.
	d.setLocked(dom, hypervisor.PowerShutOff, "unknown")
	return nil
}
