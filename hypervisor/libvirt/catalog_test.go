package libvirt

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// An import reads only what is inside the image directory.
func TestInsideImageDir(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "uploads"), 0o755))
	must(os.WriteFile(filepath.Join(root, "uploads", "disk.raw"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "uploads", "escape")))
	must(os.Symlink("disk.raw", filepath.Join(root, "uploads", "alias")))
	must(os.Symlink(outside, filepath.Join(root, "outdir")))
	for _, c := range []struct {
		path string
		want error // nil: allowed
	}{
		{"uploads/disk.raw", nil},
		{"uploads/alias", nil},
		{"uploads/./disk.raw", nil},
		{"", hypervisor.ErrInvalidSpec},
		{".", hypervisor.ErrInvalidSpec},
		{"/etc/passwd", hypervisor.ErrInvalidSpec},
		{filepath.Join(root, "uploads/disk.raw"), hypervisor.ErrInvalidSpec},
		{"../secret", hypervisor.ErrInvalidSpec},
		{"uploads/../../x", hypervisor.ErrInvalidSpec},
		{"uploads/escape", hypervisor.ErrInvalidSpec},
		{"outdir/secret", hypervisor.ErrInvalidSpec},
		{"uploads/missing", fs.ErrNotExist},
	} {
		_, err := insideImageDir(root, c.path)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("insideImageDir(%q) = %v, want %v", c.path, err, c.want)
		}
	}
}

// An image directory is listed with its checksum, travels, and is written
// whole on another host's directory; a copy with another checksum is not kept.
func TestImageCatalogueFiles(t *testing.T) {
	src := &Driver{cfg: Config{ImageDir: t.TempDir()}, log: slog.Default()}
	dst := &Driver{cfg: Config{ImageDir: t.TempDir()}, log: slog.Default()}
	ctx := t.Context()
	dir := filepath.Join(src.cfg.ImageDir, "img-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), qcow2Blank(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := src.Images(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "img-1" || list[0].SHA256 == "" || list[0].Format != "qcow2" {
		t.Fatalf("Images = %+v, %v", list, err)
	}
	open := func() (r interface{ Read([]byte) (int, error) }) {
		rc, _, err := src.OpenImage(ctx, "img-1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		return rc
	}
	if err := dst.WriteImage(ctx, "img-1", "bad", open()); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("WriteImage with a wrong checksum: %v", err)
	}
	if got, _ := dst.Images(ctx); len(got) != 0 {
		t.Fatalf("a refused copy is listed: %+v", got)
	}
	if err := dst.WriteImage(ctx, "img-1", list[0].SHA256, open()); err != nil {
		t.Fatal(err)
	}
	got, err := dst.Images(ctx)
	if err != nil || len(got) != 1 || got[0] != list[0] {
		t.Fatalf("copy listed as %+v (%v), want %+v", got, err, list[0])
	}
	if err := dst.RemoveImage(ctx, "img-1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := dst.Images(ctx); len(got) != 0 {
		t.Fatalf("removed image listed: %+v", got)
	}
}

// qcow2Blank is the header of an empty 1 MiB qcow2 (version 3), enough for
// parseQcow2Header.
func qcow2Blank() []byte {
	b := make([]byte, 512)
	copy(b, []byte{'Q', 'F', 'I', 0xfb, 0, 0, 0, 3})
	b[20+3] = 16   // cluster_bits
	b[24+5] = 0x10 // size: 1 MiB (bytes 24..31, big endian)
	return b
}

// A checksum is read once: then from the image's sum file, until a file
// of the image changes.
func TestImageChecksumIsKept(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), qcow2Blank(), 0o644); err != nil {
		t.Fatal(err)
	}
	var c sumCache
	s1, err := c.get(dir, "img")
	if err != nil {
		t.Fatal(err)
	}
	var fresh sumCache // another agent process
	if s2, err := fresh.get(dir, "img"); err != nil || s2 != s1 {
		t.Fatalf("from the sum file: %q %v, want %q", s2, err, s1)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyS0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s3, err := fresh.get(dir, "img"); err != nil || s3 == s1 {
		t.Fatalf("after a change: %q %v, the old sum", s3, err)
	}
}
