package libvirt

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// TestMoveDisk runs both halves of a cold move on one libvirtd: the disk of
// a stopped instance is imported under another id, which then boots.
func TestMoveDisk(t *testing.T) {
	d, cfg := newTestDriver(t)
	src, dst := testID(t, d), testID(t, d)
	srcPaths, dstPaths := pathsFor(cfg.DiskDir, cfg.RunDir, src), pathsFor(cfg.DiskDir, cfg.RunDir, dst)

	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), src, hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("OpenDisk of a missing domain = %v, want ErrNotFound", err)
	}
	if err := d.Create(ctxT(t, 60*time.Second), testSpec(src)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, _, err := d.OpenDisk(ctxT(t, 10*time.Second), src, hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("OpenDisk of a running domain = %v, want ErrInvalidState", err)
	}
	// Let the guest write to its disk, so the overlay holds more than a header.
	waitFor(t, 60*time.Second, "the guest to boot", func() bool { return fileContains(srcPaths.ConsoleLog, guestReady) })
	if err := d.Destroy(ctxT(t, 30*time.Second), src); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	wantState(t, d, src, hypervisor.PowerShutOff)

	disk, size, err := d.OpenDisk(ctxT(t, 10*time.Second), src, hypervisor.DiskWhole)
	if err != nil {
		t.Fatalf("OpenDisk: %v", err)
	}
	if st, err := os.Stat(srcPaths.Disk); err != nil || st.Size() != size {
		t.Fatalf("OpenDisk size %d, overlay %v (%v)", size, st, err)
	}
	err = d.ImportDomain(ctxT(t, 60*time.Second), testSpec(dst), disk)
	disk.Close()
	if err != nil {
		t.Fatalf("ImportDomain: %v", err)
	}
	wantState(t, d, dst, hypervisor.PowerShutOff)
	a, _ := os.ReadFile(srcPaths.Disk)
	b, _ := os.ReadFile(dstPaths.Disk)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("imported overlay differs from the source (%d vs %d bytes)", len(a), len(b))
	}
	if title, _ := virsh(t, "desc", "--title", domainName(dst)); strings.TrimSpace(title) != testSpec(dst).Name {
		t.Fatalf("imported domain title = %q", title)
	}

	// A retried import of the same disk succeeds and changes nothing.
	reimport := func() error {
		disk, _, err := d.OpenDisk(ctxT(t, 10*time.Second), src, hypervisor.DiskWhole)
		if err != nil {
			t.Fatalf("OpenDisk: %v", err)
		}
		defer disk.Close()
		return d.ImportDomain(ctxT(t, 60*time.Second), testSpec(dst), disk)
	}
	if err := reimport(); err != nil {
		t.Fatalf("repeated ImportDomain: %v", err)
	}
	wantNoTempFiles(t, cfg.DiskDir)

	start := time.Now()
	if err := d.Start(ctxT(t, 60*time.Second), dst); err != nil {
		t.Fatalf("Start of the imported domain: %v", err)
	}
	wantState(t, d, dst, hypervisor.PowerRunning)
	took := waitFor(t, 60*time.Second, "the imported guest to boot", func() bool {
		return fileContains(dstPaths.ConsoleLog, guestReady)
	})
	t.Logf("timing: imported guest ready %s after Start (started %s ago)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// Over a running domain an import is refused and leaves it alone.
	if err := reimport(); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("ImportDomain over a running domain = %v, want ErrAlreadyExists", err)
	}
	wantState(t, d, dst, hypervisor.PowerRunning)
	wantNoTempFiles(t, cfg.DiskDir)
}

// TestImportRefusesForeignDisks feeds ImportDomain disks that would make
// QEMU open files other than this host's image.
func TestImportRefusesForeignDisks(t *testing.T) {
	d, cfg := newTestDriver(t)
	img, err := resolveImage(cfg.ImageDir, testImage)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	other := filepath.Join(work, "other.qcow2")
	qemuImgT(t, "create", "-q", "-f", "qcow2", other, "64M")
	link := filepath.Join(work, "link.qcow2")
	if err := os.Symlink(img.Disk, link); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		make func(path string)
	}{
		{"backing file is another file", func(p string) {
			qemuImgT(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", other, p)
		}},
		{"no backing file", func(p string) {
			qemuImgT(t, "create", "-q", "-f", "qcow2", p, "64M")
		}},
		{"external data file", func(p string) {
			qemuImgT(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk,
				"-o", "data_file="+filepath.Join(work, "data.raw"), p)
		}},
		{"raw backing format", func(p string) {
			qemuImgT(t, "create", "-q", "-u", "-f", "qcow2", "-F", "raw", "-b", img.Disk, p, "64M")
		}},
		{"relative backing file", func(p string) {
			rel, err := filepath.Rel(filepath.Dir(p), img.Disk)
			if err != nil {
				t.Fatal(err)
			}
			qemuImgT(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", rel, p)
		}},
		{"larger than the spec", func(p string) {
			qemuImgT(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, p, "2G")
		}},
		{"not qcow2", func(p string) {
			if err := os.WriteFile(p, bytes.Repeat([]byte{0}, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := testID(t, d)
			p := filepath.Join(work, id+".qcow2")
			tc.make(p)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			spec := testSpec(id)
			spec.DiskGiB = 1 // "larger than the spec" is 2G
			err = d.ImportDomain(ctxT(t, 60*time.Second), spec, f)
			if !errors.Is(err, hypervisor.ErrInvalidSpec) {
				t.Fatalf("ImportDomain = %v, want ErrInvalidSpec", err)
			}
			t.Logf("refused: %v", err)
			wantState(t, d, id, hypervisor.PowerNoDomain)
			if _, err := os.Stat(pathsFor(cfg.DiskDir, cfg.RunDir, id).Disk); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("refused import left its overlay: %v", err)
			}
			wantNoTempFiles(t, cfg.DiskDir)
		})
	}

	// A backing path that is a symlink to this host's image is the image
	// "after resolving", and is accepted.
	id := testID(t, d)
	p := filepath.Join(work, id+".qcow2")
	qemuImgT(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", link, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.ImportDomain(ctxT(t, 60*time.Second), testSpec(id), f); err != nil {
		t.Fatalf("ImportDomain of an overlay over a link to the image: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerShutOff)
	h, err := parseQcow2Header(pathsFor(cfg.DiskDir, cfg.RunDir, id).Disk)
	if err != nil || h.backing != img.Disk {
		t.Fatalf("imported overlay's backing file = %q (%v), want it rewritten to %q", h.backing, err, img.Disk)
	}
	// The retried import compares with the rewritten overlay, and is the same.
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.ImportDomain(ctxT(t, 60*time.Second), testSpec(id), f); err != nil {
		t.Fatalf("repeated ImportDomain of an overlay over a link: %v", err)
	}
}

func qemuImgT(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctxT(t, 30*time.Second), "qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
}

// wantNoTempFiles checks that no import left its temporary file behind.
func wantNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".import-") {
			t.Fatalf("temporary import file left: %s", e.Name())
		}
	}
}
