package imagefile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"disk.qcow2": "disk bytes", "vmlinuz": string(make([]byte, 1300)), "cmdline": "console=ttyS0\n", "other": "not sent"})
	r, size, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("archive is %d bytes, announced %d", len(b), size)
	}
	dst := t.TempDir()
	if err := Extract(bytes.NewReader(b), dst); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"disk.qcow2", "vmlinuz", "cmdline"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		c, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil || !bytes.Equal(a, c) {
			t.Errorf("%s not copied: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "other")); err == nil {
		t.Error("a file that is not an image's was copied")
	}
	// Same contents, other times and modes: same checksum.
	s1, err := Checksum(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dst, "vmlinuz"), 0o755); err != nil {
		t.Fatal(err)
	}
	s2, err := Checksum(dst)
	if err != nil || s1 != s2 {
		t.Fatalf("checksums differ: %s %s (%v)", s1, s2, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	for name, setup := range map[string]func(dir string){
		"no disk":      func(dir string) { writeFiles(t, dir, map[string]string{"vmlinuz": "k"}) },
		"disk symlink": func(dir string) { _ = os.Symlink("/etc/passwd", filepath.Join(dir, "disk.qcow2")) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			setup(dir)
			if _, _, err := Open(dir); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Open: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestExtractRefusesForeignEntries(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"disk.qcow2": "d"})
	r, _, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	// Rename the entry to one outside the directory.
	copy(b, []byte("../evil.qcow2\x00"))
	if err := Extract(bytes.NewReader(b), t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Extract: %v, want ErrInvalid", err)
	}
}
