package fake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// FreezeDisk makes the disk as it is now the base: the domain's later
// writes (WriteDisk) only change what the guest sees, which OpenDisk's
// DiskTop gives out as the difference. Already frozen is success; the
// domain must be running, shutting down or shut off.
func (d *Driver) FreezeDisk(ctx context.Context, id string) (err error) {
	defer func() { err = d.leave("FreezeDisk", err) }()
	return d.transition(ctx, "FreezeDisk", id, func(dom *domain) error {
		if dom.base != nil {
			return nil
		}
		if !canLayer(dom.state) {
			return errState("freeze disk of", dom)
		}
		if dom.original != nil {
			return fmt.Errorf("fake: freeze disk of %s: an original is kept (drop or restore it first): %w", id, hypervisor.ErrInvalidState)
		}
		// Disk slices are never modified in place, so the base may share it.
		dom.base = d.diskLocked(dom)
		return nil
	})
}

// ThawDisk makes the disk unfrozen again, keeping what the guest wrote
// since the freeze (into the mid and the top, if refrozen). Not frozen is success; the domain must be running,
// shutting down or shut off.
func (d *Driver) ThawDisk(ctx context.Context, id string) (err error) {
	defer func() { err = d.leave("ThawDisk", err) }()
	return d.transition(ctx, "ThawDisk", id, func(dom *domain) error {
		if dom.base == nil {
			return nil
		}
		if !canLayer(dom.state) {
			return errState("thaw disk of", dom)
		}
		dom.base, dom.mid = nil, nil
		return nil
	})
}

// canLayer reports the states in which a disk can be frozen or thawed: a
// guest whose QEMU runs (live snapshot, live commit) or none at all. A
// paused guest, a saved one (whose memory image names the disk's files) and
// a crashed one (whose QEMU may hold them) cannot.
func canLayer(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerRunning || s == hypervisor.PowerShuttingDown || s == hypervisor.PowerShutOff
}

// WriteDisk simulates the guest of id writing data at off into its disk,
// which must be inside the disk's size (DiskInfo). The guest must be
// running (or shutting down). On a frozen disk the write lands in the top.
func (d *Driver) WriteDisk(id string, off int64, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	dom, err := d.lookupLocked("write disk of", id)
	if err != nil {
		return err
	}
	if dom.state != hypervisor.PowerRunning && dom.state != hypervisor.PowerShuttingDown {
		return errState("write disk of", dom)
	}
	if off < 0 || off+int64(len(data)) > d.sizeLocked(dom) {
		return fmt.Errorf("fake: write disk of %s: %d bytes at %d outside the disk's %d: %w",
			id, len(data), off, d.sizeLocked(dom), hypervisor.ErrInvalidSpec)
	}
	old := d.diskLocked(dom)
	disk := make([]byte, max(len(old), int(off)+len(data)))
	copy(disk, old)
	copy(disk[off:], data)
	dom.disk = disk
	return nil
}

// sizeLocked is dom's virtual disk size: what Reshape, AdoptDisk or
// GrowDisk made it, else the spec's DiskGiB, else the content's length.
func (d *Driver) sizeLocked(dom *domain) int64 {
	n := int64(len(d.diskLocked(dom)))
	switch {
	case dom.size > 0:
		return max(dom.size, n)
	case dom.spec.DiskGiB > 0:
		return max(int64(dom.spec.DiskGiB)<<30, n)
	}
	return n
}

// The top layer the fake gives out is the blocks of the guest-visible disk
// that differ from the base:
//
//	topMagic, sha256 of the base (its "backing file"), uint64 length of the
//	disk's content, then per block: uint64 offset, uint32 length, the bytes.
//
// ReceiveDisk accepts it only over a staged base with that hash, as the
// libvirt driver accepts a top only over the staged base.
const (
	topMagic = "FLOTILLA-FAKE-TOP1"
	topBlock = 4096
)

var errBadTop = errors.New("not a top layer")

func encodeTop(base, disk []byte) []byte {
	sum := sha256.Sum256(base)
	out := append([]byte(topMagic), sum[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(disk)))
	for off := 0; off < len(disk); off += topBlock {
		end := min(off+topBlock, len(disk))
		if end <= len(base) && bytes.Equal(disk[off:end], base[off:end]) {
			continue
		}
		out = binary.BigEndian.AppendUint64(out, uint64(off))
		out = binary.BigEndian.AppendUint32(out, uint32(end-off))
		out = append(out, disk[off:end]...)
	}
	return out
}

// applyTop checks top (untrusted bytes) against base and returns the disk
// they make together; base is not modified.
func applyTop(base, top []byte, limit int64) ([]byte, error) {
	hdr := len(topMagic) + sha256.Size + 8
	if len(top) < hdr || string(top[:len(topMagic)]) != topMagic {
		return nil, errBadTop
	}
	if sum := sha256.Sum256(base); !bytes.Equal(top[len(topMagic):len(topMagic)+sha256.Size], sum[:]) {
		return nil, fmt.Errorf("%w over the staged base (its base differs)", errBadTop)
	}
	n := binary.BigEndian.Uint64(top[hdr-8 : hdr])
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: content of %d bytes above %d", errBadTop, n, limit)
	}
	disk := make([]byte, n)
	copy(disk, base)
	for rest := top[hdr:]; len(rest) > 0; {
		if len(rest) < 12 {
			return nil, fmt.Errorf("%w: truncated block header", errBadTop)
		}
		off, l := binary.BigEndian.Uint64(rest), uint64(binary.BigEndian.Uint32(rest[8:]))
		rest = rest[12:]
		if l > uint64(len(rest)) || off > n || l > n-off {
			return nil, fmt.Errorf("%w: block of %d bytes at %d outside the disk", errBadTop, l, off)
		}
		copy(disk[off:], rest[:l])
		rest = rest[l:]
	}
	return disk, nil
}
