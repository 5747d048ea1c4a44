package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The two halves of a cold move: OpenDisk on the source host hands out the
// overlay file as it is; ImportDomain on the target writes it next to this
// host's copy of the same image and defines the domain over it. Only the
// overlay travels: both hosts hold the image it is backed by.

// importSlack is what a qcow2 file may hold beyond its virtual size: L2 and
// refcount tables (under 1/16 of the data even with 512-byte clusters) and
// the header. Leaked clusters beyond that are not worth accepting.
func importSlack(virtual uint64) uint64 { return virtual/16 + 64<<20 }

// OpenDisk opens a layer of the instance's disk for copying (see
// hypervisor.Driver): DiskWhole is the overlay of an unfrozen, shut-off
// domain; DiskBase the overlay of a frozen one, in any state (nothing
// writes it any more); DiskMid the mid of a refrozen one (<id>.top.qcow2,
// which nothing writes any more either), in any state; DiskTop the top of
// a frozen, shut-off one (<id>.top2.qcow2 once refrozen). The caller closes
// the file.
func (d *Driver) OpenDisk(ctx context.Context, id string, layer hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	if err := checkLayerName(layer); err != nil {
		return nil, 0, fmt.Errorf("libvirt: open disk of %s: %w", id, err)
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return nil, 0, fmt.Errorf("libvirt: open disk of: %w", err)
	}
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)
	ls, err := d.layers(ctx, "open disk of", id)
	if err != nil {
		return nil, 0, err
	}
	frozen := ls.frozen(paths)
	path := paths.Disk
	switch {
	case layer == hypervisor.DiskBase && !frozen:
		return nil, 0, fmt.Errorf("libvirt: open base of %s: disk not frozen: %w", id, hypervisor.ErrInvalidState)
	case layer == hypervisor.DiskBase:
	case layer == hypervisor.DiskMid && !ls.refrozen(paths):
		return nil, 0, fmt.Errorf("libvirt: open mid of %s: disk not refrozen: %w", id, hypervisor.ErrInvalidState)
	case layer == hypervisor.DiskMid:
		path = paths.Top
	case ls.s.state != hypervisor.PowerShutOff:
		// Only shut off: a saved domain's memory image would not travel
		// with its disk, and a live one's disk is still changing.
		return nil, 0, errState("open disk of", id, ls.s)
	case layer == hypervisor.DiskWhole && frozen:
		return nil, 0, fmt.Errorf("libvirt: open whole disk of %s: disk frozen (open base and top): %w", id, hypervisor.ErrInvalidState)
	case layer == hypervisor.DiskTop && !frozen:
		return nil, 0, fmt.Errorf("libvirt: open top of %s: disk not frozen: %w", id, hypervisor.ErrInvalidState)
	case layer == hypervisor.DiskTop && ls.refrozen(paths):
		path = paths.Top2
	case layer == hypervisor.DiskTop:
		path = paths.Top
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("libvirt: open disk of %s: %w", id, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("libvirt: open disk of %s: %w", id, err)
	}
	return f, st.Size(), nil
}

func checkLayerName(layer hypervisor.DiskLayer) error {
	switch layer {
	case hypervisor.DiskWhole, hypervisor.DiskBase, hypervisor.DiskMid, hypervisor.DiskTop:
		return nil
	}
	return fmt.Errorf("unknown disk layer %q: %w", layer, hypervisor.ErrInvalidSpec)
}

// ImportDomain writes disk (another host's overlay of spec.Image) as the
// instance's overlay, checks that it is one (see checkOverlay), and defines
// the domain from the same XML Create uses, without starting it. A domain
// of this id that is shut off, defined for the same spec, over a disk with
// the same bytes, is success; any other is ErrAlreadyExists. On failure the
// files and domain it made are removed.
func (d *Driver) ImportDomain(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
	if err := hypervisor.ValidateSpec(spec); err != nil {
		return fmt.Errorf("libvirt: import: %w", err)
	}
	log := d.instanceLog(spec.ID)
	unlock, err := d.locks.lock(ctx, spec.ID)
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	handedOff := false // true once a background rollback owns the lock
	defer func() {
		if !handedOff {
			unlock()
		}
	}()

	existing, err := d.observe(ctx, spec.ID)
	if err != nil {
		return err
	}
	params, img, err := d.specParams(spec)
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	virtual := spec.DiskGiB << 30
	if spec.DiskGiB == 0 {
		if virtual, err = virtualSize(ctx, img.Disk); err != nil {
			return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
		}
	}
	paths := params.Paths
	domXML, err := marshalDomain(buildDomain(params))
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}

	started := time.Now()
	tmp, sum, size, err := receiveDisk(d.cfg.DiskDir, spec.ID, disk, virtual+importSlack(virtual))
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	defer func() {
		if err := removeIfExists(tmp); err != nil {
			log.Warn("import: removing temporary disk failed", "path", tmp, "err", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	named, err := checkOverlay(ctx, tmp, img.Disk, virtual)
	if err != nil {
		log.Warn("import: refusing disk", "image", spec.Image, "err", err)
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	if named != img.Disk {
		// The overlay reaches the image through a link. Write the real path
		// into it (only the header changes), so that what QEMU opens at
		// every start is what was checked now, whatever the link becomes.
		if _, err := runQemuImg(ctx, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, tmp); err != nil {
			return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
		}
		if sum, err = fileSum(tmp); err != nil {
			return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
		}
	}

	if existing.found {
		return d.sameImport(ctx, spec.ID, existing, domXML, paths.Disk, sum)
	}

	// Renaming within one directory is atomic: QEMU never sees a
	// half-written overlay under the instance's name. A file already there
	// belongs to no domain (checked above, under the lock): a leftover.
	if err := os.Rename(tmp, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	// The seed is made anew on this host (it is not part of the disk),
	// and so are the networks and reservations.
	if err := writeGuestSeed(params, spec); err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, err)
	}
	l, err := d.conn.get()
	if err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return wrapErr("import", spec.ID, err)
	}
	// Define in a goroutine so that, if ctx ends first, the rollback can
	// wait for libvirt to finish before undoing its work (as Create does).
	done := make(chan error, 1)
	go func() {
		if _, err := l.DomainDefineXML(domXML); err != nil {
			done <- err
			return
		}
		done <- d.ensureDefinedNetworks(ctx, spec.ID, params.NICs)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		handedOff = true
		go func() {
			defer unlock()
			<-done
			d.rollbackCreate(log, spec.ID, paths)
		}()
		return fmt.Errorf("libvirt: import %s: %w", spec.ID, ctx.Err())
	}
	if err != nil {
		d.rollbackCreate(log, spec.ID, paths)
		return wrapErr("import", spec.ID, fmt.Errorf("define: %w", err))
	}
	log.Info("domain imported (defined, shut off)", "image", spec.Image, "disk_bytes", size,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// receiveDisk copies disk into a new temporary file in dir, sparse (see
// writeSparse), refusing more than limit bytes, and returns its path,
// SHA-256 and size. The file is removed again on failure.
func receiveDisk(dir, id string, disk io.Reader, limit uint64) (path string, sum [sha256.Size]byte, size int64, err error) {
	// What an import interrupted by an agent crash left (the caller holds
	// the instance's lock, so none of these is being written now).
	stale, _ := filepath.Glob(filepath.Join(dir, "."+id+".import-*.qcow2"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
	f, err := os.CreateTemp(dir, "."+id+".import-*.qcow2")
	if err != nil {
		return "", sum, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// Sparse: holes of the source (and blocks of zeros) are not written.
	// A reader that hashes what it delivers (the agent's pull) spares the
	// second pass over every byte.
	h := sha256.New()
	digest, hashed := disk.(hypervisor.DigestReader)
	if hashed {
		h = nil
	}
	if size, err = writeSparse(f, h, disk, limit); err != nil {
		return "", sum, 0, err
	}
	// Same mode as the overlays qemu-img creates, so QEMU can read either
	// whatever user it runs as.
	if err = f.Chmod(0o644); err != nil {
		return "", sum, 0, err
	}
	if err = f.Sync(); err != nil {
		return "", sum, 0, err
	}
	if err = f.Close(); err != nil {
		return "", sum, 0, err
	}
	if hashed {
		d, ok := digest.Sum()
		if !ok || len(d) != sha256.Size {
			return "", sum, 0, fmt.Errorf("receiving disk: the reader ended without a verified digest: %w", hypervisor.ErrInvalidSpec)
		}
		copy(sum[:], d)
	} else {
		h.Sum(sum[:0])
	}
	return f.Name(), sum, size, nil
}

// sameImport decides about an import of a domain that already exists: a
// retry of the import that defined it is success, anything else is
// ErrAlreadyExists. Nothing of the existing domain is touched.
func (d *Driver) sameImport(ctx context.Context, id string, s domainState, domXML, disk string, sum [sha256.Size]byte) error {
	exists := func(why string) error {
		return fmt.Errorf("libvirt: import %s: domain exists and %s: %w", id, why, hypervisor.ErrAlreadyExists)
	}
	if s.state != hypervisor.PowerShutOff {
		return exists("is " + string(s.state))
	}
	have, err := fileSum(disk)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && have != sum) {
		return exists("its disk differs")
	}
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", id, err)
	}
	var defined string
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		defined, err = l.DomainGetXMLDesc(s.dom, golibvirt.DomainXMLInactive)
		return err
	})
	if err != nil {
		return wrapErr("import", id, err)
	}
	same, err := sameDefinition(defined, domXML)
	if err != nil {
		return fmt.Errorf("libvirt: import %s: %w", id, err)
	}
	if !same {
		return exists("its definition differs")
	}
	d.instanceLog(id).Info("import: domain already imported from the same disk")
	return nil
}

// definitionKey is what sameDefinition compares: the parts of a domain a
// spec decides, in libvirt's normalised form.
type definitionKey struct {
	Name   string    `xml:"name"`
	UUID   string    `xml:"uuid"`
	Title  string    `xml:"title"`
	Memory memoryXML `xml:"memory"`
	VCPU   uint32    `xml:"vcpu"`
	Disks  []struct {
		Source fileSourceXML `xml:"source"`
	} `xml:"devices>disk"`
	Interfaces []struct {
		MAC macXML `xml:"mac"`
	} `xml:"devices>interface"`
}

// sameDefinition reports whether libvirt's XML of a defined domain describes
// the domain our XML would define.
func sameDefinition(defined, ours string) (bool, error) {
	var a, b definitionKey
	if err := xml.Unmarshal([]byte(defined), &a); err != nil {
		return false, fmt.Errorf("parse defined domain: %w", err)
	}
	if err := xml.Unmarshal([]byte(ours), &b); err != nil {
		return false, fmt.Errorf("parse domain: %w", err)
	}
	if len(a.Disks) != len(b.Disks) {
		return false, nil
	}
	for i := range a.Disks {
		if a.Disks[i].Source != b.Disks[i].Source {
			return false, nil
		}
	}
	if len(a.Interfaces) != len(b.Interfaces) {
		return false, nil
	}
	for i := range a.Interfaces {
		if a.Interfaces[i].MAC != b.Interfaces[i].MAC {
			return false, nil
		}
	}
	return a.Name == b.Name && a.UUID == b.UUID && a.Title == b.Title && a.VCPU == b.VCPU &&
		kib(a.Memory) == kib(b.Memory), nil
}

// kib converts a libvirt memory element to KiB (libvirt reports KiB; we
// write MiB).
func kib(m memoryXML) uint64 {
	switch m.Unit {
	case "MiB", "M":
		return m.Value << 10
	case "GiB", "G":
		return m.Value << 20
	case "b", "bytes":
		return m.Value >> 10
	}
	return m.Value
}

func fileSum(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}
