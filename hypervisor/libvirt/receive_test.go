package libvirt

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// receiveDisk stops at the size limit and leaves nothing behind; no libvirtd
// needed.
func TestReceiveDiskLimit(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := receiveDisk(dir, "vm", bytes.NewReader(make([]byte, 1001)), 1000); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("receiveDisk over the limit = %v, want ErrInvalidSpec", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("receiveDisk over the limit left %d files", len(entries))
	}
	path, _, size, err := receiveDisk(dir, "vm", bytes.NewReader(make([]byte, 1000)), 1000)
	if err != nil || size != 1000 {
		t.Fatalf("receiveDisk at the limit = %d, %v", size, err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 1000 {
		t.Fatalf("received file: %v %v", st, err)
	}
}

// A file that is not qcow2, or is cut short, is refused before qemu-img
// ever reads it.
func TestParseQcow2HeaderRefusesJunk(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty":     nil,
		"short":     []byte("QFI\xfb\x00\x00\x00\x03"),
		"zeros":     make([]byte, 4096),
		"version 9": append([]byte("QFI\xfb\x00\x00\x00\x09"), make([]byte, 200)...),
	} {
		p := dir + "/" + name
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := parseQcow2Header(p); !errors.Is(err, hypervisor.ErrInvalidSpec) {
			t.Errorf("%s: parseQcow2Header = %v, want ErrInvalidSpec", name, err)
		}
	}
}
