package libvirt

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// fileHas reports whether the length bytes at off of the qcow2 chain at path
// (not in use, or only read) all hold pattern, read with qemu-io.
func fileHas(t *testing.T, path string, pattern byte, off, length int64) bool {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	out, err := exec.CommandContext(ctx, "qemu-io", "-r", "-U", "-f", "qcow2",
		"-c", fmt.Sprintf("read -P 0x%02x %d %d", pattern, off, length), path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io read of %s: %v: %s", path, err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("read %d/%d bytes at offset %d", length, length, off)) {
		t.Fatalf("qemu-io read of %s: %s", path, out)
	}
	return !strings.Contains(string(out), "Pattern verification failed")
}

func wantFileHas(t *testing.T, path string, pattern byte, off, length int64) {
	t.Helper()
	if !fileHas(t, path, pattern, off, length) {
		t.Fatalf("%s lacks pattern %#x at %d+%d", path, pattern, off, length)
	}
}

func wantAbsent(t *testing.T, what string, files ...string) {
	t.Helper()
	for _, f := range files {
		if exists(f) {
			t.Errorf("%s: %s left", what, f)
		}
	}
}

// The three writes of the two-pass tests: the first before the freeze,
// the second between the freezes (the mid), the third after the refreeze
// (the top), each overwriting part of the one before.
func writeThree(t *testing.T, id string, step int) {
	t.Helper()
	switch step {
	case 1:
		testenv.GuestDiskWrite(t, testURI, id, 0x5a, 1*mib, 3*mib)
	case 2:
		testenv.GuestDiskWrite(t, testURI, id, 0xa5, 2*mib, 3*mib)
	case 3:
		testenv.GuestDiskWrite(t, testURI, id, 0x3c, 3*mib, 3*mib)
	}
}

// wantThree checks, with check, what the three writes leave.
func wantThree(t *testing.T, check func(pattern byte, off, length int64)) {
	t.Helper()
	check(0x5a, 1*mib, 1*mib)
	check(0xa5, 2*mib, 1*mib)
	check(0x3c, 3*mib, 3*mib)
}

// TestResizeTwoPasses runs a running guest's resize to another host with a
// second live pass, on one libvirtd with two ids: freeze, copy the base
// while it runs, refreeze, copy the mid while it runs (merged into the
// staged base at once), stop, copy the top, adopt at a bigger shape. Then
// the source thaws its shut-off, refrozen disk.
func TestResizeTwoPasses(t *testing.T) {
	d, cfg := newTestDriver(t)
	a, b := testID(t, d), testID(t, d)
	pa, pb := pathsFor(cfg.DiskDir, cfg.RunDir, a), pathsFor(cfg.DiskDir, cfg.RunDir, b)
	bootGuest(t, d, cfg, testSpec(a))
	writeThree(t, a, 1)

	if err := d.RefreezeDisk(ctxT(t, 30*time.Second), a); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("RefreezeDisk of an unfrozen disk = %v, want ErrInvalidState", err)
	}
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), a))
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskMid); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(mid) of a disk frozen once = %v, want ErrInvalidState", err)
	}
	big := testSpec(b)
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 192, 1
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), big, hypervisor.DiskMid, strings.NewReader("x")); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("ReceiveDisk(mid) with no base staged = %v, want ErrInvalidState", err)
	}
	copyLayer(t, d, a, big, hypervisor.DiskBase) // while a runs
	writeThree(t, a, 2)                          // lands in the top, the mid to be

	mustDo(t, "RefreezeDisk", d.RefreezeDisk(ctxT(t, 30*time.Second), a))
	mustDo(t, "RefreezeDisk again", d.RefreezeDisk(ctxT(t, 30*time.Second), a))
	if live, persistent := diskSource(t, a, false), diskSource(t, a, true); live != pa.Top2 || persistent != pa.Top2 {
		t.Fatalf("refrozen disk: live %s, persistent %s, want %s", live, persistent, pa.Top2)
	}
	if st, err := os.Stat(pa.Top2); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("top made by the second snapshot: %v (%v)", st, err)
	}
	if h, err := parseQcow2Header(pa.Top2); err != nil || h.backing != pa.Top {
		t.Fatalf("second top backed by %q (%v), want the mid %s", h.backing, err, pa.Top)
	}
	out, _ := virsh(t, "domblklist", domainName(a))
	if !strings.Contains(out, pa.Top2) {
		t.Fatalf("domblklist after refreeze: %s", out)
	}
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskTop); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(top) while running = %v, want ErrInvalidState", err)
	}
	baseSum, err := fileSum(pb.IncomingBase)
	mustDo(t, "sum", err)
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), big, hypervisor.DiskMid, strings.NewReader("not qcow2")); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("garbage mid = %v, want ErrInvalidSpec", err)
	}
	if s, _ := fileSum(pb.IncomingBase); s != baseSum {
		t.Fatal("a refused mid changed the staged base")
	}
	copyLayer(t, d, a, big, hypervisor.DiskMid) // while a runs
	copyLayer(t, d, a, big, hypervisor.DiskMid) // a retry is harmless
	wantAbsent(t, "after ReceiveDisk(mid)", pb.IncomingMid, pb.IncomingTop)
	wantNoTempFiles(t, cfg.DiskDir)
	writeThree(t, a, 3) // lands in the second top
	testenv.GuestDiskVerify(t, testURI, a, 0x5a, 1*mib, 1*mib)

	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), a, 30*time.Second, true))
	mustDo(t, "RefreezeDisk of a refrozen, shut-off disk", d.RefreezeDisk(ctxT(t, 30*time.Second), a))
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(whole) of a refrozen disk = %v, want ErrInvalidState", err)
	}
	copyLayer(t, d, a, big, hypervisor.DiskTop)
	copyLayer(t, d, a, big, hypervisor.DiskMid) // a late retry of the mid is harmless too
	// The base and mid the target holds, the top it holds over them: the
	// source's disk.
	wantThree(t, func(p byte, off, n int64) { wantFileHas(t, pb.IncomingTop, p, off, n) })
	mustDo(t, "AdoptDisk", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	wantAbsent(t, "after AdoptDisk", pb.IncomingBase, pb.IncomingMid, pb.IncomingTop)
	wantState(t, d, b, hypervisor.PowerShutOff)
	if v, err := virtualSize(ctxT(t, 10*time.Second), pb.Disk); err != nil || v != 1<<30 {
		t.Fatalf("adopted disk virtual size %d (%v), want 1 GiB", v, err)
	}
	wantThree(t, func(p byte, off, n int64) { wantFileHas(t, pb.Disk, p, off, n) })
	if h, err := parseQcow2Header(pb.Disk); err != nil || !strings.HasSuffix(h.backing, "/disk.qcow2") {
		t.Fatalf("adopted disk backed by %q (%v), want the image", h.backing, err)
	}
	mustDo(t, "Start b", d.Start(ctxT(t, 60*time.Second), b))
	waitFor(t, 90*time.Second, "b to boot at its new shape", func() bool {
		sh, ok := testenv.LatestGuestShape(pb.ConsoleLog)
		return ok && sh.VCPUs == 2 && sh.DiskBytes == 1<<30
	})
	wantThree(t, func(p byte, off, n int64) { testenv.GuestDiskVerify(t, testURI, b, p, off, n) })

	// Revert: the source thaws its shut-off, refrozen disk.
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), a))
	mustDo(t, "ThawDisk again", d.ThawDisk(ctxT(t, 60*time.Second), a))
	wantAbsent(t, "after ThawDisk", pa.Top, pa.Top2)
	if persistent := diskSource(t, a, true); persistent != pa.Disk {
		t.Fatalf("after ThawDisk: persistent disk %s", persistent)
	}
	if h, err := parseQcow2Header(pa.Disk); err != nil || !strings.HasSuffix(h.backing, "/disk.qcow2") {
		t.Fatalf("base backed by %q (%v) after the thaw", h.backing, err)
	}
	wantThree(t, func(p byte, off, n int64) { wantFileHas(t, pa.Disk, p, off, n) })

	for _, id := range []string{a, b} {
		mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	}
	wantNoFilesOf(t, cfg, a, b)
}

// TestThawRefrozenLive is a rollback of a two-pass resize while the guest
// still runs: the mid is committed into the base, then the top, with
// every write kept and the guest on the base.
func TestThawRefrozenLive(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	writeThree(t, id, 1)
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	writeThree(t, id, 2)
	mustDo(t, "RefreezeDisk", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	writeThree(t, id, 3)
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), id))
	mustDo(t, "ThawDisk again", d.ThawDisk(ctxT(t, 60*time.Second), id))
	if live, persistent := diskSource(t, id, false), diskSource(t, id, true); live != p.Disk || persistent != p.Disk {
		t.Fatalf("after live thaw: live %s, persistent %s", live, persistent)
	}
	wantAbsent(t, "after live thaw", p.Top, p.Top2)
	wantThree(t, func(pat byte, off, n int64) { testenv.GuestDiskVerify(t, testURI, id, pat, off, n) })
	mustDo(t, "Destroy", d.Destroy(ctxT(t, 30*time.Second), id))
	if h, err := parseQcow2Header(p.Disk); err != nil || !strings.HasSuffix(h.backing, "/disk.qcow2") {
		t.Fatalf("base backed by %q (%v) after the commits", h.backing, err)
	}
	wantThree(t, func(pat byte, off, n int64) { wantFileHas(t, p.Disk, pat, off, n) })

	// Shut off: refreeze makes a qemu-img overlay; the domain boots from
	// it and a live thaw merges both layers again.
	mustDo(t, "FreezeDisk shut off", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	mustDo(t, "RefreezeDisk shut off", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	mustDo(t, "RefreezeDisk shut off again", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	if persistent := diskSource(t, id, true); persistent != p.Top2 {
		t.Fatalf("refrozen shut-off disk: persistent %s", persistent)
	}
	if st, err := os.Stat(p.Top2); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("top made by qemu-img: %v (%v)", st, err)
	}
	mid := openLayerBytes(t, d, id, hypervisor.DiskMid)
	if h, err := parseQcow2Header(p.Top); err != nil || h.backing != p.Disk || int64(len(mid)) == 0 {
		t.Fatalf("mid backed by %q (%v), %d bytes", h.backing, err, len(mid))
	}
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), id))
	if live := diskSource(t, id, false); live != p.Top2 {
		t.Fatalf("booted refrozen disk runs on %s", live)
	}
	testenv.GuestDiskWrite(t, testURI, id, 0x99, 5*mib, 1*mib)
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), id))
	if live, persistent := diskSource(t, id, false), diskSource(t, id, true); live != p.Disk || persistent != p.Disk {
		t.Fatalf("after the second live thaw: live %s, persistent %s", live, persistent)
	}
	wantAbsent(t, "after the second live thaw", p.Top, p.Top2)
	testenv.GuestDiskVerify(t, testURI, id, 0x99, 5*mib, 1*mib)
	testenv.GuestDiskVerify(t, testURI, id, 0xa5, 2*mib, 1*mib)
	mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	wantNoFilesOf(t, cfg, id)
}

// TestThawRefrozenLiveFinishesInterruptedCommit: a ThawDisk retried after
// the commit of the mid it started was left running (or has ended, the mid
// merged, the top not yet) finishes the thaw instead of starting over.
func TestThawRefrozenLiveFinishesInterruptedCommit(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x77, 0, 16*mib)
	mustDo(t, "RefreezeDisk", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x78, 8*mib, 1*mib)
	// The mid's commit, as an interrupted ThawDisk would have left it.
	out, err := virsh(t, "blockcommit", domainName(id), "vda", "--top", p.Top, "--base", p.Disk)
	mustDo(t, "blockcommit "+out, err)
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), id))
	if live, persistent := diskSource(t, id, false), diskSource(t, id, true); live != p.Disk || persistent != p.Disk {
		t.Fatalf("after thaw: live %s, persistent %s", live, persistent)
	}
	wantAbsent(t, "after thaw", p.Top, p.Top2)
	testenv.GuestDiskVerify(t, testURI, id, 0x77, 0, 8*mib)
	testenv.GuestDiskVerify(t, testURI, id, 0x78, 8*mib, 1*mib)
	testenv.GuestDiskVerify(t, testURI, id, 0x77, 9*mib, 7*mib)

	// The mid merged by a thaw cut short, then the domain shut off: the
	// shut-off thaw commits the top straight into the base.
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x79, 0, 1*mib)
	mustDo(t, "RefreezeDisk", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x7a, 1*mib, 1*mib)
	out, err = virsh(t, "blockcommit", domainName(id), "vda", "--top", p.Top, "--base", p.Disk, "--wait")
	mustDo(t, "blockcommit "+out, err)
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), id, 30*time.Second, true))
	if h, err := parseQcow2Header(p.Top2); err != nil || h.backing != p.Disk {
		t.Fatalf("top after the mid's commit backed by %q (%v)", h.backing, err)
	}
	mustDo(t, "ThawDisk shut off", d.ThawDisk(ctxT(t, 60*time.Second), id))
	wantAbsent(t, "after the shut-off thaw", p.Top, p.Top2)
	wantFileHas(t, p.Disk, 0x79, 0, 1*mib)
	wantFileHas(t, p.Disk, 0x7a, 1*mib, 1*mib)
	wantFileHas(t, p.Disk, 0x78, 8*mib, 1*mib)
}

// TestDeleteRemovesMidFiles: Delete removes a mid and a second top, and a
// staged mid left by an interrupted ReceiveDisk, with no domain defined.
func TestDeleteRemovesMidFiles(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	for _, f := range []string{p.Top, p.Top2, p.IncomingBase, p.IncomingMid, p.IncomingTop} {
		mustDo(t, "write", os.WriteFile(f, []byte("x"), 0o644))
	}
	mustDo(t, "Delete", d.Delete(ctxT(t, 30*time.Second), id))
	wantNoFilesOf(t, cfg, id)
}

func openLayerBytes(t *testing.T, d *Driver, id string, layer hypervisor.DiskLayer) []byte {
	t.Helper()
	rc, size, err := d.OpenDisk(ctxT(t, 10*time.Second), id, layer)
	mustDo(t, "OpenDisk "+string(layer), err)
	defer rc.Close()
	b := make([]byte, size)
	_, err = rc.Read(b[:min(len(b), 4096)])
	mustDo(t, "read", err)
	return b
}
