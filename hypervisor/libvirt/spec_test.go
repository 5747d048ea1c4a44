package libvirt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func validSpec() hypervisor.DomainSpec {
	return hypervisor.DomainSpec{ID: "vm-1", Name: "x", VCPUs: 1, MemoryMiB: 128, Image: "flotilla-test"}
}

func TestValidateSpec(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*hypervisor.DomainSpec)
		ok   bool
	}{
		{"valid", func(*hypervisor.DomainSpec) {}, true},
		{"max id", func(s *hypervisor.DomainSpec) { s.ID = "a" + strings.Repeat("b", 62) }, true},
		{"id too long", func(s *hypervisor.DomainSpec) { s.ID = "a" + strings.Repeat("b", 63) }, false},
		{"id upper", func(s *hypervisor.DomainSpec) { s.ID = "VM" }, false},
		{"id leading dash", func(s *hypervisor.DomainSpec) { s.ID = "-vm" }, false},
		{"id slash", func(s *hypervisor.DomainSpec) { s.ID = "a/b" }, false},
		{"id empty", func(s *hypervisor.DomainSpec) { s.ID = "" }, false},
		{"image dotdot", func(s *hypervisor.DomainSpec) { s.Image = "../etc" }, false},
		{"image inner dotdot", func(s *hypervisor.DomainSpec) { s.Image = "a..b" }, false},
		{"image slash", func(s *hypervisor.DomainSpec) { s.Image = "a/b" }, false},
		{"image dot", func(s *hypervisor.DomainSpec) { s.Image = "." }, false},
		{"image dots ok", func(s *hypervisor.DomainSpec) { s.Image = "debian-12.1_x" }, true},
		{"vcpus 0", func(s *hypervisor.DomainSpec) { s.VCPUs = 0 }, false},
		{"vcpus 65", func(s *hypervisor.DomainSpec) { s.VCPUs = 65 }, false},
		{"vcpus 64", func(s *hypervisor.DomainSpec) { s.VCPUs = 64 }, true},
		{"memory 63", func(s *hypervisor.DomainSpec) { s.MemoryMiB = 63 }, false},
		{"memory max", func(s *hypervisor.DomainSpec) { s.MemoryMiB = 262144 }, true},
		{"memory over", func(s *hypervisor.DomainSpec) { s.MemoryMiB = 262145 }, false},
		{"disk huge", func(s *hypervisor.DomainSpec) { s.DiskGiB = 1 << 40 }, false},
		{"name markup ok", func(s *hypervisor.DomainSpec) { s.Name = `<>&'" ../` }, true},
		{"name newline", func(s *hypervisor.DomainSpec) { s.Name = "a\nb" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.mod(&s)
			err := hypervisor.ValidateSpec(s)
			if tt.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tt.ok && !errors.Is(err, hypervisor.ErrInvalidSpec) {
				t.Fatalf("error = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResolveImage(t *testing.T) {
	root := t.TempDir()
	images := filepath.Join(root, "images")
	outside := filepath.Join(root, "outside")
	writeFiles(t, filepath.Join(images, "kernel"), ".complete", "disk.qcow2", "vmlinuz", "initrd.img", "cmdline")
	writeFiles(t, filepath.Join(images, "diskonly"), ".complete", "disk.qcow2")
	writeFiles(t, filepath.Join(images, "partial"), "disk.qcow2", "vmlinuz")
	writeFiles(t, filepath.Join(images, "nodisk"), ".complete")
	writeFiles(t, outside, ".complete", "disk.qcow2")
	writeFiles(t, filepath.Join(images, "escdisk"), ".complete")
	must(t, os.Symlink(outside, filepath.Join(images, "escape")))
	must(t, os.Symlink(filepath.Join(outside, "disk.qcow2"), filepath.Join(images, "escdisk", "disk.qcow2")))
	must(t, os.Symlink(filepath.Join(images, "kernel"), filepath.Join(images, "alias")))

	img, err := resolveImage(images, "kernel")
	if err != nil {
		t.Fatal(err)
	}
	if img.Kernel == "" || img.Initrd == "" || img.Cmdline != "cmdline" || !strings.HasSuffix(img.Disk, "/kernel/disk.qcow2") {
		t.Fatalf("kernel image resolved wrong: %+v", img)
	}
	if img, err = resolveImage(images, "diskonly"); err != nil || img.Kernel != "" || img.Disk == "" {
		t.Fatalf("disk-only image: %+v %v", img, err)
	}
	if img, err = resolveImage(images, "alias"); err != nil || !strings.HasSuffix(img.Disk, "/kernel/disk.qcow2") {
		t.Fatalf("symlink inside the image dir should resolve: %+v %v", img, err)
	}
	for _, name := range []string{"partial", "nodisk", "escape", "escdisk", "missing", "../outside"} {
		if _, err := resolveImage(images, name); !errors.Is(err, hypervisor.ErrImageNotFound) {
			t.Errorf("%s: error = %v, want ErrImageNotFound", name, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesRunDirTooLongForSockets(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 60)
	_, err := Config{RunDir: long, DiskDir: t.TempDir(), DomainType: "qemu"}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "too long for guest sockets") {
		t.Fatalf("withDefaults with a %d-byte run dir: %v", len(long), err)
	}
	if _, err := (Config{RunDir: t.TempDir()[:5] + "r", DiskDir: t.TempDir(), DomainType: "qemu"}).withDefaults(); err != nil {
		t.Fatalf("short run dir refused: %v", err)
	}
}
