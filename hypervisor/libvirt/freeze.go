package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// A frozen disk is two files: <id>.qcow2, the base, no longer written, and
// <id>.top.qcow2 over it, which takes the guest's writes. The domain is
// frozen when its definition (live while it runs, else persistent) names
// the top. On libvirt 9.0 both an external disk-only snapshot and the pivot
// of an active commit update the persistent definition of a running
// persistent domain as well as the live one (TestFreezeThawDefinitions
// checks it); the driver redefines the persistent definition itself all
// the same, so that a later Start boots the right file whatever libvirt did.
//
// A refrozen disk (RefreezeDisk) is three: the base, <id>.top.qcow2 over it,
// now the mid and no longer written, and <id>.top2.qcow2 over the mid,
// which takes the writes. The names stay fixed because a running domain's
// file cannot be renamed under libvirt: the snapshot makes the new top at a
// new path and the old top stays where it is, as the mid. The domain is
// refrozen when its definition names <id>.top2.qcow2.

// commitPoll is how often ThawDisk looks at its block commit.
const commitPoll = 100 * time.Millisecond

// layerState is what the resize methods need to know of a domain's disk.
type layerState struct {
	s          domainState
	persistent definition
	live       *definition // while a QEMU runs
}

// current is the disk file the domain runs on (or would boot).
func (ls layerState) current() string {
	if ls.live != nil {
		return ls.live.disk
	}
	return ls.persistent.disk
}

// frozen reports whether the domain's disk is frozen: what runs (or would
// boot) is the top, or the second top of a refrozen disk.
func (ls layerState) frozen(paths instancePaths) bool {
	c := ls.current()
	return c == paths.Top || c == paths.Top2
}

// refrozen reports whether the domain's disk is refrozen: what runs (or
// would boot) is the second top, over the mid.
func (ls layerState) refrozen(paths instancePaths) bool {
	return ls.current() == paths.Top2
}

// active reports whether a QEMU process holds the domain's disks.
func active(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerRunning || s == hypervisor.PowerPaused || s == hypervisor.PowerShuttingDown
}

func (d *Driver) layers(ctx context.Context, op, id string) (layerState, error) {
	s, err := d.observe(ctx, id)
	if err != nil {
		return layerState{}, err
	}
	if !s.found {
		return layerState{}, errState(op, id, s)
	}
	ls := layerState{s: s}
	if ls.persistent, err = d.readDefinition(ctx, id, s, false); err != nil {
		return layerState{}, err
	}
	if active(s.state) {
		live, err := d.readDefinition(ctx, id, s, true)
		if err != nil {
			return layerState{}, err
		}
		ls.live = &live
	}
	return ls, nil
}

// snapshotXML is the disk-only snapshot FreezeDisk asks libvirt for.
type snapshotXML struct {
	XMLName xml.Name          `xml:"domainsnapshot"`
	Disks   []snapshotDiskXML `xml:"disks>disk"`
}

type snapshotDiskXML struct {
	Name     string             `xml:"name,attr"`
	Snapshot string             `xml:"snapshot,attr"` // "external", or "no" for the seed
	Driver   *snapshotDriverXML `xml:"driver"`
	Source   *fileSourceXML     `xml:"source"`
}

type snapshotDriverXML struct {
	Type string `xml:"type,attr"`
}

// FreezeDisk: see hypervisor.Driver. A running (or shutting-down) domain
// gets an external disk-only snapshot into <id>.top.qcow2, without
// snapshot metadata; a shut-off one a new overlay made with qemu-img.
func (d *Driver) FreezeDisk(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: freeze disk: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: freeze disk of %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)

	ls, err := d.layers(ctx, "freeze disk of", id)
	if err != nil {
		return err
	}
	if ls.frozen(paths) {
		if cur := ls.current(); ls.persistent.disk != cur {
			// A freeze interrupted between the snapshot and the redefinition.
			if err := d.define(ctx, ls.persistent.params, cur); err != nil {
				return wrapErr("freeze disk of", id, err)
			}
		}
		return nil
	}
	if ls.persistent.disk != paths.Disk || (ls.live != nil && ls.live.disk != paths.Disk) {
		return fmt.Errorf("libvirt: freeze disk of %s: disk is %s, not its overlay: %w", id, ls.persistent.disk, hypervisor.ErrInvalidState)
	}
	if exists(paths.Original) {
		return fmt.Errorf("libvirt: freeze disk of %s: an original is kept (drop or restore it first): %w", id, hypervisor.ErrInvalidState)
	}
	// Nothing uses a top file now: a leftover of an interrupted freeze.
	if err := removeIfExists(paths.Top); err != nil {
		return fmt.Errorf("libvirt: freeze disk of %s: %w", id, err)
	}
	started := time.Now()
	if err := d.newTop(ctx, "freeze disk of", id, ls, paths.Disk, paths.Top); err != nil {
		return err
	}
	// Whatever libvirt did to the persistent definition, it names the top now.
	if err := d.define(ctx, ls.persistent.params, paths.Top); err != nil {
		if ls.s.state == hypervisor.PowerShutOff {
			_ = removeIfExists(paths.Top)
		}
		return wrapErr("freeze disk of", id, fmt.Errorf("redefine: %w", err))
	}
	log.Info("disk frozen", "live", ls.s.state != hypervisor.PowerShutOff, "top", paths.Top,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// newTop sends the domain's writes to a new, empty layer top over the
// layer it runs on now, under: an external disk-only snapshot (without
// snapshot metadata) while it runs or shuts down, a qemu-img overlay when
// it is shut off; other states are ErrInvalidState. The file gets mode
// 0644, as every other layer. The caller redefines the domain.
func (d *Driver) newTop(ctx context.Context, op, id string, ls layerState, under, top string) error {
	log := d.instanceLog(id)
	switch ls.s.state {
	case hypervisor.PowerRunning, hypervisor.PowerShuttingDown:
		lay := layoutFor(d.cfg.DomainType)
		disk := snapshotDiskXML{Name: lay.DiskDev, Snapshot: "external",
			Driver: &snapshotDriverXML{Type: "qcow2"}, Source: &fileSourceXML{File: top}}
		snap := snapshotXML{Disks: []snapshotDiskXML{disk}}
		if ls.persistent.params.Seed != "" {
			// The read-only seed is not part of the instance's disk.
			snap.Disks = append(snap.Disks, snapshotDiskXML{Name: lay.SeedDev, Snapshot: "no"})
		}
		b, err := xml.Marshal(snap)
		if err != nil {
			return fmt.Errorf("libvirt: %s %s: %w", op, id, err)
		}
		flags := golibvirt.DomainSnapshotCreateDiskOnly | golibvirt.DomainSnapshotCreateNoMetadata | golibvirt.DomainSnapshotCreateAtomic
		err = d.call(ctx, func(l *golibvirt.Libvirt) error {
			_, err := l.DomainSnapshotCreateXML(ls.s.dom, string(b), uint32(flags))
			return err
		})
		if err != nil {
			// ATOMIC: on failure libvirt left the domain on its layer.
			if now, lerr := d.layers(context.Background(), op, id); lerr == nil && now.current() != top {
				_ = removeIfExists(top)
			}
			return wrapErr(op, id, fmt.Errorf("snapshot: %w", err))
		}
		// libvirt creates the top 0600; give it the mode of every other
		// overlay here, so that QEMU reads it whatever user qemu.conf
		// makes it (this host runs it as root without ownership changes).
		if err := os.Chmod(top, 0o644); err != nil {
			log.Warn("chmod of the new top failed", "path", top, "err", err)
		}
	case hypervisor.PowerShutOff:
		if _, err := runQemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", under, top); err != nil {
			_ = removeIfExists(top)
			return fmt.Errorf("libvirt: %s %s: %w", op, id, err)
		}
		if err := os.Chmod(top, 0o644); err != nil {
			_ = removeIfExists(top)
			return fmt.Errorf("libvirt: %s %s: %w", op, id, err)
		}
	default:
		return errState(op, id, ls.s)
	}
	return nil
}

// ThawDisk: see hypervisor.Driver. While a QEMU runs, a shallow active block
// commit merges the top into its immediate backing file, the base (never
// further down, into the image), and pivots to the base once ready; a shut-off
// domain's top is merged with qemu-img commit, which also writes into the
// immediate backing file only. A refrozen disk's mid is merged first while
// it runs (a non-active block commit of the mid into the base, which QEMU
// follows by pointing the top at the base), and when it is shut off the top
// is merged into the mid and the mid into the base. Then the persistent
// definition names the base again and the top (and mid) are removed.
func (d *Driver) ThawDisk(ctx context.Context, id string) error {
	if err := hypervisor.ValidateID(id); err != nil {
		return fmt.Errorf("libvirt: thaw disk: %w", err)
	}
	unlock, err := d.locks.lock(ctx, id)
	if err != nil {
		return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
	}
	defer unlock()
	log := d.instanceLog(id)
	paths := pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id)

	ls, err := d.layers(ctx, "thaw disk of", id)
	if err != nil {
		return err
	}
	if !ls.frozen(paths) && ls.persistent.disk != paths.Top && ls.persistent.disk != paths.Top2 {
		// Not frozen; tops no definition names are leftovers.
		if err := removeLayers(paths); err != nil {
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
		return nil
	}
	started := time.Now()
	switch {
	case ls.live != nil && !ls.frozen(paths):
		// Pivoted already; only the persistent definition is left to fix.
	case ls.s.state == hypervisor.PowerRunning || ls.s.state == hypervisor.PowerShuttingDown:
		top := paths.Top
		if ls.refrozen(paths) {
			if err := d.commitMidLive(ctx, id, ls.s.dom, paths); err != nil {
				return err
			}
			top = paths.Top2
		}
		if err := d.commitLive(ctx, id, ls.s.dom, paths, top); err != nil {
			return err
		}
	case ls.s.state == hypervisor.PowerShutOff:
		if err := commitShutOff(ctx, paths, ls.persistent.disk == paths.Top2); err != nil {
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
	default:
		return errState("thaw disk of", id, ls.s)
	}
	if err := d.define(ctx, ls.persistent.params, paths.Disk); err != nil {
		return wrapErr("thaw disk of", id, fmt.Errorf("redefine: %w", err))
	}
	if err := removeLayers(paths); err != nil {
		return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
	}
	log.Info("disk thawed", "live", ls.live != nil, "refrozen", ls.persistent.disk == paths.Top2,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// checkChain refuses to merge top unless its backing file is base: a
// commit writes into the immediate backing file, which must never be the
// image.
func checkChain(ctx context.Context, top, base string) error {
	h, err := parseQcow2Header(top)
	if err != nil {
		return err
	}
	if h.backing != base {
		return fmt.Errorf("top %s is backed by %q, not %s: %w", top, h.backing, base, hypervisor.ErrInvalidState)
	}
	return nil
}

// removeLayers removes a thawed disk's top and mid files, those that exist.
func removeLayers(paths instancePaths) error {
	return errors.Join(removeIfExists(paths.Top2), removeIfExists(paths.Top))
}

// commitShutOff merges a shut-off domain's top into the base with qemu-img
// commit, which writes into the top's immediate backing file only (checked
// first: never the image). A refrozen disk's top is merged into the mid and
// the mid into the base; a top already pointed at the base (the mid merged
// by a live thaw interrupted before its pivot) straight into the base.
// Each commit repeated after an interruption writes the same data again.
func commitShutOff(ctx context.Context, paths instancePaths, refrozen bool) error {
	commit := func(top, base string) error {
		if err := checkChain(ctx, top, base); err != nil {
			return err
		}
		_, err := runQemuImg(ctx, "commit", "-q", "-f", "qcow2", top)
		return err
	}
	if !refrozen {
		return commit(paths.Top, paths.Disk)
	}
	h, err := parseQcow2Header(paths.Top2)
	if err != nil {
		return err
	}
	if h.backing == paths.Disk {
		return commit(paths.Top2, paths.Disk)
	}
	if err := commit(paths.Top2, paths.Top); err != nil {
		return err
	}
	return commit(paths.Top, paths.Disk)
}

// commitLive runs a shallow active block commit of the disk's top (the
// active layer, top) into the base, waits until it is ready and pivots. A
// commit already under way (an interrupted ThawDisk) is waited for instead
// of started again.
func (d *Driver) commitLive(ctx context.Context, id string, dom golibvirt.Domain, paths instancePaths, top string) error {
	log := d.instanceLog(id)
	disk := layoutFor(d.cfg.DomainType).DiskDev
	if err := checkChain(ctx, top, paths.Disk); err != nil {
		return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
	}
	var found int32
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		found, _, _, _, _, err = l.DomainGetBlockJobInfo(dom, disk, 0)
		return err
	})
	if err != nil {
		return wrapErr("thaw disk of", id, err)
	}
	if found == 0 {
		// SHALLOW with no base: the top's immediate backing file, the base.
		err = d.call(ctx, func(l *golibvirt.Libvirt) error {
			return l.DomainBlockCommit(dom, disk, nil, nil, 0,
				golibvirt.DomainBlockCommitActive|golibvirt.DomainBlockCommitShallow)
		})
		if err != nil {
			return wrapErr("thaw disk of", id, fmt.Errorf("block commit: %w", err))
		}
		log.Info("thaw: live block commit started")
	} else {
		log.Info("thaw: block job already under way; waiting for it")
	}
	for {
		var cur, end uint64
		err := d.call(ctx, func(l *golibvirt.Libvirt) error {
			var err error
			found, _, _, cur, end, err = l.DomainGetBlockJobInfo(dom, disk, 0)
			return err
		})
		if err != nil {
			return wrapErr("thaw disk of", id, err)
		}
		if found == 0 {
			return fmt.Errorf("libvirt: thaw disk of %s: block commit ended without a pivot: %w", id, hypervisor.ErrInvalidState)
		}
		if cur == end {
			err = d.call(ctx, func(l *golibvirt.Libvirt) error {
				return l.DomainBlockJobAbort(dom, disk, golibvirt.DomainBlockJobAbortPivot)
			})
			if err == nil {
				return nil
			}
			// Not ready yet (QEMU reports ready a little after cur==end).
			if !isCode(err, golibvirt.ErrBlockCopyActive) && !isCode(err, golibvirt.ErrOperationInvalid) {
				return wrapErr("thaw disk of", id, fmt.Errorf("pivot: %w", err))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, ctx.Err())
		case <-time.After(commitPoll):
		}
	}
}
