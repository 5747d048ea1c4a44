package libvirt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

const testURI = "qemu:///system"

func mustDo(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func bootGuest(t *testing.T, d *Driver, cfg Config, spec hypervisor.DomainSpec) {
	t.Helper()
	mustDo(t, "Create", d.Create(ctxT(t, 60*time.Second), spec))
	waitFor(t, 90*time.Second, "the guest to boot", func() bool {
		return fileContains(pathsFor(cfg.DiskDir, cfg.RunDir, spec.ID).ConsoleLog, guestReady)
	})
}

// copyLayer copies layer of src's disk into dst's staged layers.
func copyLayer(t *testing.T, d *Driver, src string, dst hypervisor.DomainSpec, layer hypervisor.DiskLayer) {
	t.Helper()
	rc, _, err := d.OpenDisk(ctxT(t, 10*time.Second), src, layer)
	mustDo(t, "OpenDisk "+string(layer), err)
	defer rc.Close()
	mustDo(t, "ReceiveDisk "+string(layer), d.ReceiveDisk(ctxT(t, 60*time.Second), dst, layer, rc))
}

func diskSource(t *testing.T, id string, inactive bool) string {
	t.Helper()
	args := []string{"dumpxml", domainName(id)}
	if inactive {
		args = append(args, "--inactive")
	}
	out, err := virsh(t, args...)
	mustDo(t, "dumpxml", err)
	def, err := parseDefinition(Config{}, id, out)
	mustDo(t, "parse", err)
	return def.disk
}

const mib = 1 << 20

// TestResizeToAnotherHostLayers runs a running guest's resize to another
// host on one libvirtd, with two ids: freeze, copy the base while it runs,
// write more, stop, copy the top, adopt at a bigger shape, boot.
func TestResizeToAnotherHostLayers(t *testing.T) {
	d, cfg := newTestDriver(t)
	a, b := testID(t, d), testID(t, d)
	pa, pb := pathsFor(cfg.DiskDir, cfg.RunDir, a), pathsFor(cfg.DiskDir, cfg.RunDir, b)
	bootGuest(t, d, cfg, testSpec(a))
	testenv.GuestDiskWrite(t, testURI, a, 0x5a, 1*mib, 4*mib)

	_, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskBase)
	if !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(base) of an unfrozen disk = %v, want ErrInvalidState", err)
	}
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), a))
	mustDo(t, "FreezeDisk again", d.FreezeDisk(ctxT(t, 30*time.Second), a))
	if live, persistent := diskSource(t, a, false), diskSource(t, a, true); live != pa.Top || persistent != pa.Top {
		t.Fatalf("frozen disk: live %s, persistent %s, want %s", live, persistent, pa.Top)
	}
	if st, err := os.Stat(pa.Top); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("top made by the snapshot: %v (%v)", st, err)
	}
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskTop); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(top) while running = %v, want ErrInvalidState", err)
	}
	big := testSpec(b)
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 192, 1
	copyLayer(t, d, a, big, hypervisor.DiskBase)              // while a runs
	testenv.GuestDiskWrite(t, testURI, a, 0xa5, 3*mib, 4*mib) // lands in the top
	testenv.GuestDiskVerify(t, testURI, a, 0x5a, 1*mib, 2*mib)

	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), a, 30*time.Second, true))
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(whole) of a frozen disk = %v, want ErrInvalidState", err)
	}
	copyLayer(t, d, a, big, hypervisor.DiskTop)
	copyLayer(t, d, a, big, hypervisor.DiskTop) // a retry replaces it
	mustDo(t, "AdoptDisk", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	mustDo(t, "AdoptDisk again", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	for _, f := range []string{pb.IncomingBase, pb.IncomingTop} {
		if exists(f) {
			t.Errorf("%s left after AdoptDisk", f)
		}
	}
	wantState(t, d, b, hypervisor.PowerShutOff)
	if v, err := virtualSize(ctxT(t, 10*time.Second), pb.Disk); err != nil || v != 1<<30 {
		t.Fatalf("adopted disk virtual size %d (%v), want 1 GiB", v, err)
	}
	out, _ := virsh(t, "dumpxml", "--inactive", domainName(b))
	if !strings.Contains(out, ">2</vcpu>") || !strings.Contains(out, ">196608</memory>") {
		t.Fatalf("adopted domain's XML lacks the new shape:\n%s", out)
	}
	mustDo(t, "Start b", d.Start(ctxT(t, 60*time.Second), b))
	waitFor(t, 90*time.Second, "b to boot at its new shape", func() bool {
		sh, ok := testenv.LatestGuestShape(pb.ConsoleLog)
		return ok && sh.VCPUs == 2 && sh.DiskBytes == 1<<30 && sh.MemKiB > 128<<10
	})
	testenv.GuestDiskVerify(t, testURI, b, 0x5a, 1*mib, 2*mib)
	testenv.GuestDiskVerify(t, testURI, b, 0xa5, 3*mib, 4*mib)

	// Revert: the source thaws its shut-off disk and boots from the base.
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), a))
	mustDo(t, "ThawDisk again", d.ThawDisk(ctxT(t, 60*time.Second), a))
	if exists(pa.Top) || diskSource(t, a, true) != pa.Disk {
		t.Fatalf("after ThawDisk: top exists %v, persistent disk %s", exists(pa.Top), diskSource(t, a, true))
	}
	mustDo(t, "Start a", d.Start(ctxT(t, 60*time.Second), a))
	testenv.GuestDiskVerify(t, testURI, a, 0x5a, 1*mib, 2*mib)
	testenv.GuestDiskVerify(t, testURI, a, 0xa5, 3*mib, 4*mib)

	// Confirm: Delete removes every file of each.
	for _, id := range []string{a, b} {
		mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	}
	wantNoFilesOf(t, cfg, a, b)
}

// TestResizeStoppedToAnotherHost: a stopped instance's whole disk is staged
// and adopted at a bigger shape; the source's disk is untouched.
func TestResizeStoppedToAnotherHost(t *testing.T) {
	d, cfg := newTestDriver(t)
	a, b := testID(t, d), testID(t, d)
	pa, pb := pathsFor(cfg.DiskDir, cfg.RunDir, a), pathsFor(cfg.DiskDir, cfg.RunDir, b)
	bootGuest(t, d, cfg, testSpec(a))
	testenv.GuestDiskWrite(t, testURI, a, 0x66, 5*mib, 2*mib)
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), a, 30*time.Second, true))
	before, err := fileSum(pa.Disk)
	mustDo(t, "sum", err)
	big := testSpec(b)
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 160, 1
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), a, hypervisor.DiskTop); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk(top) of an unfrozen disk = %v, want ErrInvalidState", err)
	}
	copyLayer(t, d, a, big, hypervisor.DiskWhole)
	mustDo(t, "AdoptDisk", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	mustDo(t, "AdoptDisk again", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), big, hypervisor.DiskWhole, strings.NewReader("")); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("ReceiveDisk after AdoptDisk = %v, want ErrAlreadyExists", err)
	}
	other := big
	other.VCPUs = 3
	if err := d.AdoptDisk(ctxT(t, 10*time.Second), other); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("AdoptDisk at another shape = %v, want ErrAlreadyExists", err)
	}
	mustDo(t, "Start b", d.Start(ctxT(t, 60*time.Second), b))
	waitFor(t, 90*time.Second, "b to boot at its new shape", func() bool {
		sh, ok := testenv.LatestGuestShape(pb.ConsoleLog)
		return ok && sh.VCPUs == 2 && sh.DiskBytes == 1<<30
	})
	testenv.GuestDiskVerify(t, testURI, b, 0x66, 5*mib, 2*mib)
	if s, _ := fileSum(pa.Disk); s != before {
		t.Fatal("the source's disk changed")
	}
	// Delete of an id with only staged files (no domain) removes them.
	c := testID(t, d)
	copyLayer(t, d, a, testSpec(c), hypervisor.DiskWhole)
	mustDo(t, "Delete c", d.Delete(ctxT(t, 30*time.Second), c))
	wantNoFilesOf(t, cfg, c)
}

func wantNoFilesOf(t *testing.T, cfg Config, ids ...string) {
	t.Helper()
	ents, _ := os.ReadDir(cfg.DiskDir)
	for _, e := range ents {
		for _, id := range ids {
			if strings.Contains(e.Name(), id) {
				t.Errorf("file %s left in the disk dir", filepath.Join(cfg.DiskDir, e.Name()))
			}
		}
	}
}

// TestThawLive is a rollback while the guest still runs: the live commit
// keeps every write, the guest runs on the base, and a later boot too.
func TestThawLive(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	testenv.GuestDiskWrite(t, testURI, id, 0x11, 0, 2*mib)
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x22, 1*mib, 2*mib)
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), id))
	mustDo(t, "ThawDisk again", d.ThawDisk(ctxT(t, 60*time.Second), id))
	if live, persistent := diskSource(t, id, false), diskSource(t, id, true); live != p.Disk || persistent != p.Disk || exists(p.Top) {
		t.Fatalf("after live thaw: live %s, persistent %s, top exists %v", live, persistent, exists(p.Top))
	}
	testenv.GuestDiskVerify(t, testURI, id, 0x11, 0, 1*mib)
	testenv.GuestDiskVerify(t, testURI, id, 0x22, 1*mib, 2*mib)
	if testenv.GuestDiskHas(t, testURI, id, 0x11, 1*mib, 2*mib) {
		t.Fatal("GuestDiskHas finds a pattern that was overwritten")
	}
	mustDo(t, "Destroy", d.Destroy(ctxT(t, 30*time.Second), id))
	// The base alone holds both writes, and its backing is still the image.
	h, err := parseQcow2Header(p.Disk)
	mustDo(t, "header", err)
	if !strings.HasSuffix(h.backing, "/disk.qcow2") {
		t.Fatalf("base backed by %s after the commit", h.backing)
	}
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), id))
	testenv.GuestDiskVerify(t, testURI, id, 0x22, 1*mib, 2*mib)
}

// TestFreezeThawDefinitions finds out what libvirt itself does to a running
// persistent domain's inactive definition on a disk-only snapshot and on
// the pivot of an active commit (the driver redefines it either way).
func TestFreezeThawDefinitions(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	out, err := virsh(t, "snapshot-create-as", domainName(id), "--disk-only", "--no-metadata", "--atomic",
		"--diskspec", "vda,snapshot=external,file="+p.Top)
	mustDo(t, "snapshot "+out, err)
	t.Logf("after a disk-only snapshot: live %s, inactive %s", diskSource(t, id, false), diskSource(t, id, true))
	out, err = virsh(t, "blockcommit", domainName(id), "vda", "--active", "--shallow", "--wait", "--pivot")
	mustDo(t, "blockcommit "+out, err)
	t.Logf("after the commit's pivot: live %s, inactive %s", diskSource(t, id, false), diskSource(t, id, true))
}

// TestReshapeRoundTrip: Reshape keeps the disk byte for byte, Unshape gives
// it back, DropOriginal removes it.
func TestReshapeRoundTrip(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	testenv.GuestDiskWrite(t, testURI, id, 0x33, 2*mib, 3*mib)
	big := testSpec(id)
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 192, 1
	if err := d.Reshape(ctxT(t, 30*time.Second), big); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Reshape while running = %v, want ErrInvalidState", err)
	}
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), id, 30*time.Second, true))
	before, err := fileSum(p.Disk)
	mustDo(t, "sum", err)

	mustDo(t, "Reshape", d.Reshape(ctxT(t, 60*time.Second), big))
	mustDo(t, "Reshape again", d.Reshape(ctxT(t, 60*time.Second), big))
	if s, _ := fileSum(p.Original); s != before {
		t.Fatal("the original is not the disk as it was")
	}
	if v, _ := virtualSize(ctxT(t, 10*time.Second), p.Disk); v != 1<<30 {
		t.Fatalf("reshaped disk %d bytes, want 1 GiB", v)
	}
	if out, err := runQemuImg(ctxT(t, 30*time.Second), "compare", "-f", "qcow2", "-F", "qcow2", p.Original, p.Disk); err != nil {
		t.Fatalf("reshaped disk's data differs from the original: %v %s", err, out)
	}
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), id))
	testenv.GuestDiskVerify(t, testURI, id, 0x33, 2*mib, 3*mib)
	testenv.GuestDiskWrite(t, testURI, id, 0x44, 2*mib, 1*mib)
	out, _ := virsh(t, "dumpxml", domainName(id))
	if !strings.Contains(out, ">2</vcpu>") {
		t.Fatalf("reshaped domain does not run with 2 vCPUs:\n%s", out)
	}
	if err := d.Unshape(ctxT(t, 30*time.Second), testSpec(id)); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Unshape while running = %v, want ErrInvalidState", err)
	}
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), id, 30*time.Second, true))
	mustDo(t, "Unshape", d.Unshape(ctxT(t, 30*time.Second), testSpec(id)))
	mustDo(t, "Unshape again", d.Unshape(ctxT(t, 30*time.Second), testSpec(id)))
	if s, _ := fileSum(p.Disk); s != before || exists(p.Original) {
		t.Fatalf("after Unshape: disk as before %v, original left %v", s == before, exists(p.Original))
	}
	out, _ = virsh(t, "dumpxml", "--inactive", domainName(id))
	if !strings.Contains(out, ">1</vcpu>") {
		t.Fatalf("unshaped domain not at 1 vCPU:\n%s", out)
	}
	if err := d.Unshape(ctxT(t, 30*time.Second), big); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Unshape to another shape with nothing kept = %v, want ErrInvalidState", err)
	}

	mustDo(t, "Reshape", d.Reshape(ctxT(t, 60*time.Second), big))
	mustDo(t, "DropOriginal", d.DropOriginal(ctxT(t, 30*time.Second), id))
	mustDo(t, "DropOriginal again", d.DropOriginal(ctxT(t, 30*time.Second), id))
	if exists(p.Original) {
		t.Fatal("original left after DropOriginal")
	}
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), id))
	testenv.GuestDiskVerify(t, testURI, id, 0x33, 2*mib, 3*mib)
	mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	wantNoFilesOf(t, cfg, id)
}

// TestGrowDiskLive: the running guest sees its grown disk without a reboot,
// and the next boot too; a shut-off disk grows with qemu-img.
func TestGrowDiskLive(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	guestSees := func(bytes int64) bool {
		s, ok := testenv.LatestGuestShape(p.ConsoleLog)
		return ok && s.DiskBytes == bytes
	}
	waitFor(t, 30*time.Second, "the guest's shape line", func() bool { return guestSees(64 * mib) })
	mustDo(t, "GrowDisk", d.GrowDisk(ctxT(t, 30*time.Second), id, 1))
	mustDo(t, "GrowDisk again", d.GrowDisk(ctxT(t, 30*time.Second), id, 1))
	waitFor(t, 30*time.Second, "the guest to see 1 GiB", func() bool { return guestSees(1 << 30) })
	testenv.GuestDiskWrite(t, testURI, id, 0x55, 1<<30-mib, mib)
	if err := d.GrowDisk(ctxT(t, 30*time.Second), id, 0); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("GrowDisk smaller = %v, want ErrInvalidSpec", err)
	}
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), id, 30*time.Second, true))
	if v, _ := virtualSize(ctxT(t, 10*time.Second), p.Disk); v != 1<<30 {
		t.Fatalf("disk file %d bytes after a live grow, want 1 GiB", v)
	}
	mustDo(t, "GrowDisk shut off", d.GrowDisk(ctxT(t, 30*time.Second), id, 2))
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), id))
	waitFor(t, 90*time.Second, "the guest to boot with 2 GiB", func() bool { return guestSees(2 << 30) })
	testenv.GuestDiskVerify(t, testURI, id, 0x55, 1<<30-mib, mib)
	s, _ := testenv.LatestGuestShape(p.ConsoleLog)
	if s.VCPUs != 1 || s.MemKiB <= 0 {
		t.Fatalf("shape %+v", s)
	}
}

// TestReceiveDiskRefusesForeignTop: a top whose chain is not the staged
// base's is refused, and nothing is staged.
func TestReceiveDiskRefusals(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	spec := testSpec(id)
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), spec, hypervisor.DiskTop, strings.NewReader("x")); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("top with no base staged = %v, want ErrInvalidState", err)
	}
	if err := d.AdoptDisk(ctxT(t, 10*time.Second), spec); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("AdoptDisk with nothing staged = %v, want ErrInvalidState", err)
	}
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), spec, hypervisor.DiskBase, strings.NewReader("not qcow2")); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("garbage base = %v, want ErrInvalidSpec", err)
	}
	// A qcow2 over a file that is not the image.
	other := filepath.Join(t.TempDir(), "other.qcow2")
	_, err := runQemuImg(ctxT(t, 10*time.Second), "create", "-q", "-f", "qcow2", other, "64M")
	mustDo(t, "create", err)
	bad := filepath.Join(t.TempDir(), "bad.qcow2")
	_, err = runQemuImg(ctxT(t, 10*time.Second), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", other, bad)
	mustDo(t, "create", err)
	f, _ := os.Open(bad)
	defer f.Close()
	if err := d.ReceiveDisk(ctxT(t, 10*time.Second), spec, hypervisor.DiskBase, f); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("base over a foreign file = %v, want ErrInvalidSpec", err)
	}
	if exists(p.IncomingBase) {
		t.Fatal("a refused base was staged")
	}
	wantNoTempFiles(t, cfg.DiskDir)

	// A base made here over the image, and tops over it as another host
	// would name it: an absolute path is rebased onto the staged base, a
	// relative one (resolved wherever the file lies) is refused.
	img, err := resolveImage(cfg.ImageDir, testImage)
	mustDo(t, "image", err)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	_, err = runQemuImg(ctxT(t, 10*time.Second), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, base)
	mustDo(t, "create base", err)
	send := func(layer hypervisor.DiskLayer, path string) error {
		f, err := os.Open(path)
		mustDo(t, "open", err)
		defer f.Close()
		return d.ReceiveDisk(ctxT(t, 30*time.Second), spec, layer, f)
	}
	mustDo(t, "ReceiveDisk base", send(hypervisor.DiskBase, base))
	top := filepath.Join(dir, "top.qcow2")
	_, err = runQemuImg(ctxT(t, 10*time.Second), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-u", "-b", "base.qcow2", top, "64M")
	mustDo(t, "create top", err)
	if err := send(hypervisor.DiskTop, top); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("top with a relative backing file = %v, want ErrInvalidSpec", err)
	}
	_, err = runQemuImg(ctxT(t, 10*time.Second), "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "/elsewhere/src.qcow2", top)
	mustDo(t, "rebase top", err)
	mustDo(t, "ReceiveDisk top", send(hypervisor.DiskTop, top))
	if h, err := parseQcow2Header(p.IncomingTop); err != nil || h.backing != p.IncomingBase {
		t.Fatalf("staged top backed by %q (%v), want the staged base", h.backing, err)
	}
	big := spec
	big.DiskGiB = 1
	if err := send(hypervisor.DiskTop, filepath.Join(cfg.ImageDir, testImage, "vmlinuz")); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("a kernel as top = %v, want ErrInvalidSpec", err)
	}
	mustDo(t, "AdoptDisk", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	if h, err := parseQcow2Header(p.Disk); err != nil || h.backing != img.Disk || h.virtualSize != 1<<30 {
		t.Fatalf("adopted disk: %+v (%v)", h, err)
	}
	mustDo(t, "Delete", d.Delete(ctxT(t, 30*time.Second), id))
	wantNoFilesOf(t, cfg, id)
}

// TestThawLiveFinishesInterruptedCommit: a ThawDisk retried after the
// commit it started was left running (the agent restarted) waits for that
// commit and pivots, instead of starting another.
func TestThawLiveFinishesInterruptedCommit(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	p := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	bootGuest(t, d, cfg, testSpec(id))
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	testenv.GuestDiskWrite(t, testURI, id, 0x77, 0, 8*mib)
	out, err := virsh(t, "blockcommit", domainName(id), "vda", "--active", "--shallow")
	mustDo(t, "blockcommit "+out, err)
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), id))
	if live, persistent := diskSource(t, id, false), diskSource(t, id, true); live != p.Disk || persistent != p.Disk || exists(p.Top) {
		t.Fatalf("after thaw: live %s, persistent %s, top exists %v", live, persistent, exists(p.Top))
	}
	testenv.GuestDiskVerify(t, testURI, id, 0x77, 0, 8*mib)
	if out, _ := virsh(t, "blockjob", domainName(id), "vda", "--info"); strings.TrimSpace(out) != "" && !strings.Contains(out, "No current block job") {
		t.Fatalf("a block job is left: %s", out)
	}
}
