package libvirt

import (
	"context"
	"encoding/xml"
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

// commitPoll is how often ThawDisk looks at its block commit.
const commitPoll = 100 * time.Millisecond

// layerState is what the resize methods need to know of a domain's disk.
type layerState struct {
	s          domainState
	persistent definition
	live       *definition // while a QEMU runs
}

// frozen reports whether the domain's disk is frozen: what runs (or would
// boot) is the top.
func (ls layerState) frozen(paths instancePaths) bool {
	if ls.live != nil {
		return ls.live.disk == paths.Top
	}
	return ls.persistent.disk == paths.Top
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
	Name     string `xml:"name,attr"`
	Snapshot string `xml:"snapshot,attr"` // "external"
	Driver   struct {
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source fileSourceXML `xml:"source"`
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
		if ls.persistent.disk != paths.Top {
			// A freeze interrupted between the snapshot and the redefinition.
			if err := d.define(ctx, ls.persistent.params, paths.Top); err != nil {
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
	switch ls.s.state {
	case hypervisor.PowerRunning, hypervisor.PowerShuttingDown:
		disk := snapshotDiskXML{Name: layoutFor(d.cfg.DomainType).DiskDev, Snapshot: "external",
			Source: fileSourceXML{File: paths.Top}}
		disk.Driver.Type = "qcow2"
		snap := snapshotXML{Disks: []snapshotDiskXML{disk}}
		b, err := xml.Marshal(snap)
		if err != nil {
			return fmt.Errorf("libvirt: freeze disk of %s: %w", id, err)
		}
		flags := golibvirt.DomainSnapshotCreateDiskOnly | golibvirt.DomainSnapshotCreateNoMetadata | golibvirt.DomainSnapshotCreateAtomic
		err = d.call(ctx, func(l *golibvirt.Libvirt) error {
			_, err := l.DomainSnapshotCreateXML(ls.s.dom, string(b), uint32(flags))
			return err
		})
		if err != nil {
			// ATOMIC: on failure libvirt left the domain on its overlay.
			if now, lerr := d.layers(context.Background(), "freeze disk of", id); lerr == nil && !now.frozen(paths) {
				_ = removeIfExists(paths.Top)
			}
			return wrapErr("freeze disk of", id, fmt.Errorf("snapshot: %w", err))
		}
		// libvirt creates the top 0600; give it the mode of every other
		// overlay here, so that QEMU reads it whatever user qemu.conf
		// makes it (this host runs it as root without ownership changes).
		if err := os.Chmod(paths.Top, 0o644); err != nil {
			log.Warn("freeze: chmod of the top failed", "err", err)
		}
	case hypervisor.PowerShutOff:
		if _, err := runQemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", paths.Disk, paths.Top); err != nil {
			_ = removeIfExists(paths.Top)
			return fmt.Errorf("libvirt: freeze disk of %s: %w", id, err)
		}
		if err := os.Chmod(paths.Top, 0o644); err != nil {
			_ = removeIfExists(paths.Top)
			return fmt.Errorf("libvirt: freeze disk of %s: %w", id, err)
		}
	default:
		return errState("freeze disk of", id, ls.s)
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

// ThawDisk: see hypervisor.Driver. While a QEMU runs, a shallow active block
// commit merges the top into its immediate backing file, the base (never
// further down, into the image), and pivots to the base once ready; a shut-off
// domain's top is merged with qemu-img commit, which also writes into the
// immediate backing file only. Then the persistent definition names the base
// again and the top is removed.
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
	if !ls.frozen(paths) && ls.persistent.disk != paths.Top {
		// Not frozen; a top no definition names is a leftover.
		if err := removeIfExists(paths.Top); err != nil {
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
		return nil
	}
	started := time.Now()
	switch {
	case ls.live != nil && ls.live.disk != paths.Top:
		// Pivoted already; only the persistent definition is left to fix.
	case ls.s.state == hypervisor.PowerRunning || ls.s.state == hypervisor.PowerShuttingDown:
		if err := d.commitLive(ctx, id, ls.s.dom, paths); err != nil {
			return err
		}
	case ls.s.state == hypervisor.PowerShutOff:
		if err := checkChain(ctx, paths.Top, paths.Disk); err != nil {
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
		if _, err := runQemuImg(ctx, "commit", "-q", "-f", "qcow2", paths.Top); err != nil {
			return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
		}
	default:
		return errState("thaw disk of", id, ls.s)
	}
	if err := d.define(ctx, ls.persistent.params, paths.Disk); err != nil {
		return wrapErr("thaw disk of", id, fmt.Errorf("redefine: %w", err))
	}
	if err := removeIfExists(paths.Top); err != nil {
		return fmt.Errorf("libvirt: thaw disk of %s: %w", id, err)
	}
	log.Info("disk thawed", "live", ls.live != nil, "took", time.Since(started).Round(time.Millisecond))
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

// commitLive runs a shallow active block commit of the disk's top into the
// base, waits until it is ready and pivots. A commit already under way (an
// interrupted ThawDisk) is waited for instead of started again.
func (d *Driver) commitLive(ctx context.Context, id string, dom golibvirt.Domain, paths instancePaths) error {
	log := d.instanceLog(id)
	disk := layoutFor(d.cfg.DomainType).DiskDev
	if err := checkChain(ctx, paths.Top, paths.Disk); err != nil {
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
