package libvirt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// An imported disk comes from another host, so it is untrusted input to
// qemu-img and to QEMU. A qcow2 file names other files (its backing file,
// an external data file) that QEMU opens with its own privileges: a crafted
// header could make the guest read any file on this host. checkOverlay makes
// sure the file is exactly what Create would have made here: a qcow2 overlay
// over this host's image and nothing else.
//
// The header is checked in Go first, so qemu-img never opens a file that
// names an external data file (older qemu-img opened it even for "info");
// then qemu-img's own reading of the file must agree.

const (
	qcow2Magic = 0x514649fb // "QFI\xfb"

	// Incompatible feature bits that change which files QEMU opens or how
	// it reads them.
	qcow2IncompatCorrupt  = 1 << 1
	qcow2IncompatDataFile = 1 << 2

	// Header extension types.
	qcow2ExtEnd           = 0x00000000
	qcow2ExtBackingFormat = 0xe2792aca
	qcow2ExtDataFile      = 0x44415441
	qcow2ExtEncryption    = 0x0537be77

	// qcow2HeaderRead is how much of the file the header check reads; the
	// header, its extensions and the backing file name live in the first
	// cluster, and qemu refuses backing names longer than 1023 bytes.
	qcow2HeaderRead = 64 << 10
	maxBackingName  = 1023
)

// qcow2Header is what checkOverlay needs from a qcow2 header.
type qcow2Header struct {
	backing       string
	backingFormat string
	virtualSize   uint64
}

// parseQcow2Header reads and checks the header of the qcow2 file at path.
func parseQcow2Header(path string) (qcow2Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return qcow2Header{}, err
	}
	defer f.Close()
	buf := make([]byte, qcow2HeaderRead)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return qcow2Header{}, fmt.Errorf("read header: %w", err)
	}
	buf = buf[:n]
	bad := func(format string, args ...any) (qcow2Header, error) {
		return qcow2Header{}, fmt.Errorf("qcow2 header: "+format+": %w", append(args, hypervisor.ErrInvalidSpec)...)
	}
	if len(buf) < 72 {
		return bad("file too short")
	}
	be := binary.BigEndian
	if be.Uint32(buf[0:]) != qcow2Magic {
		return bad("not a qcow2 file")
	}
	version := be.Uint32(buf[4:])
	if version != 2 && version != 3 {
		return bad("version %d", version)
	}
	h := qcow2Header{virtualSize: be.Uint64(buf[24:])}
	if crypt := be.Uint32(buf[32:]); crypt != 0 {
		return bad("encrypted (method %d)", crypt)
	}
	if snaps := be.Uint32(buf[60:]); snaps != 0 {
		return bad("%d internal snapshots", snaps)
	}
	extStart := uint64(72)
	if version == 3 {
		if len(buf) < 104 {
			return bad("file too short")
		}
		incompat := be.Uint64(buf[72:])
		if incompat&qcow2IncompatDataFile != 0 {
			return bad("uses an external data file")
		}
		if incompat&qcow2IncompatCorrupt != 0 {
			return bad("marked corrupt")
		}
		extStart = uint64(be.Uint32(buf[100:]))
	}

	backingOff, backingLen := be.Uint64(buf[8:]), uint64(be.Uint32(buf[16:]))
	if backingOff == 0 || backingLen == 0 {
		return bad("no backing file")
	}
	if backingLen > maxBackingName || backingOff > uint64(len(buf)) || backingOff+backingLen > uint64(len(buf)) {
		return bad("backing file name out of range")
	}
	h.backing = string(buf[backingOff : backingOff+backingLen])

	// Header extensions: type, length, data padded to 8 bytes, until type 0.
	for off := extStart; ; {
		if off+8 > uint64(len(buf)) {
			return bad("header extensions run past the first %d bytes", len(buf))
		}
		typ, l := be.Uint32(buf[off:]), uint64(be.Uint32(buf[off+4:]))
		off += 8
		if typ == qcow2ExtEnd {
			break
		}
		if off+l > uint64(len(buf)) {
			return bad("header extension %#x out of range", typ)
		}
		data := buf[off : off+l]
		switch typ {
		case qcow2ExtDataFile:
			return bad("names an external data file")
		case qcow2ExtEncryption:
			return bad("encrypted")
		case qcow2ExtBackingFormat:
			h.backingFormat = string(bytes.TrimRight(data, "\x00"))
		}
		off += (l + 7) &^ 7
	}
	return h, nil
}

// qemuImgInfo is the part of `qemu-img info --output=json` checkOverlay reads.
type qemuImgInfo struct {
	Filename        string `json:"filename"`
	Format          string `json:"format"`
	VirtualSize     uint64 `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FullBackingName string `json:"full-backing-filename"`
	BackingFormat   string `json:"backing-filename-format"`
	Snapshots       []any  `json:"snapshots"`
	Encrypted       bool   `json:"encrypted"`
	DirtyFlag       bool   `json:"dirty-flag"`
	FormatSpecific  struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	} `json:"format-specific"`
}

// checkOverlay refuses, wrapping hypervisor.ErrInvalidSpec, a file at path
// that is not a qcow2 overlay whose only backing file is backing (this
// host's resolved image disk), in qcow2 format, with a virtual size of at
// most maxVirtual. It returns the backing file name as the overlay spells
// it, which may be a link to backing.
func checkOverlay(ctx context.Context, path, backing string, maxVirtual uint64) (string, error) {
	return checkLayerFile(ctx, path, backing, 1, maxVirtual)
}

// checkLayerFile is checkOverlay for a file depth layers above the image:
// 1 for an overlay (backing is the image), 2 for a top over a staged base
// (backing is the staged base, itself an overlay of the image).
func checkLayerFile(ctx context.Context, path, backing string, depth int, maxVirtual uint64) (string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("imported disk: "+format+": %w", append(args, hypervisor.ErrInvalidSpec)...)
	}
	h, err := parseQcow2Header(path)
	if err != nil {
		return "", fmt.Errorf("imported disk: %w", err)
	}
	if err := sameBacking(h.backing, backing); err != nil {
		return "", bad("header: %v", err)
	}
	if h.backingFormat != "qcow2" {
		return "", bad("header: backing format %q, want qcow2", h.backingFormat)
	}
	if h.virtualSize > maxVirtual {
		return "", bad("virtual size %d bytes above %d", h.virtualSize, maxVirtual)
	}

	// Now that nothing in it points elsewhere, let qemu-img read it too: it
	// is what QEMU will believe. -f keeps it from probing the format.
	out, err := runQemuImg(ctx, "info", "--output=json", "-f", "qcow2", path)
	if err != nil {
		return "", qemuImgErr(ctx, err)
	}
	var info qemuImgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return "", bad("qemu-img info: %v", err)
	}
	switch {
	case info.Format != "qcow2":
		return "", bad("format %q", info.Format)
	case info.BackingFormat != "qcow2":
		return "", bad("backing format %q", info.BackingFormat)
	case len(info.Snapshots) > 0:
		return "", bad("%d internal snapshots", len(info.Snapshots))
	case info.Encrypted:
		return "", bad("encrypted")
	case info.VirtualSize > maxVirtual:
		return "", bad("virtual size %d bytes above %d", info.VirtualSize, maxVirtual)
	}
	for _, key := range []string{"data-file", "data-file-raw", "encrypt"} {
		if _, ok := info.FormatSpecific.Data[key]; ok {
			return "", bad("qcow2 %s present", key)
		}
	}
	if c, _ := info.FormatSpecific.Data["corrupt"].(bool); c {
		return "", bad("marked corrupt")
	}
	for _, name := range []string{info.BackingFilename, info.FullBackingName} {
		if err := sameBacking(name, backing); err != nil {
			return "", bad("qemu-img: %v", err)
		}
	}

	// The backing file is this host's own image (or staged base); the
	// chain must end at the image.
	out, err = runQemuImg(ctx, "info", "--output=json", "--backing-chain", "-f", "qcow2", path)
	if err != nil {
		return "", qemuImgErr(ctx, err)
	}
	var chain []qemuImgInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return "", bad("qemu-img info --backing-chain: %v", err)
	}
	if len(chain) != depth+1 || chain[depth].BackingFilename != "" {
		return "", bad("backing chain of %d images, want %d", len(chain), depth+1)
	}
	if err := sameBacking(chain[1].Filename, backing); err != nil {
		return "", bad("backing chain: %v", err)
	}
	return h.backing, nil
}

// sameBacking reports, as an error, whether name (as written in an overlay)
// is not the expected backing file. Only an absolute path is accepted:
// a relative one would be resolved against wherever the overlay lies, and
// qemu's "json:" or protocol names could reach anything.
func sameBacking(name, want string) error {
	if !filepath.IsAbs(name) {
		return fmt.Errorf("backing file %q is not an absolute path", name)
	}
	resolved, err := filepath.EvalSymlinks(name)
	if err != nil || resolved != want {
		return fmt.Errorf("backing file %q is not this host's image %q", name, want)
	}
	return nil
}

// qemuImgErr classifies a failed qemu-img run on an imported disk: the
// caller's deadline stays a deadline, anything else means qemu-img could
// not make sense of the file.
func qemuImgErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("imported disk: %w", err)
	}
	return fmt.Errorf("imported disk: %w: %w", hypervisor.ErrInvalidSpec, err)
}
