package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/imagefile"
)

// The image catalogue's side of the driver: listing the image directory
// with checksums, and the images' travelling form (hypervisor/imagefile).

// sumCache keeps images' checksums, keyed by what their files look like
// (sizes and times), so listing the directory does not read every image:
// in memory, and in the image's sumFile, so that an agent's first
// registration after a restart does not read gigabytes either.
type sumCache struct {
	mu   sync.Mutex
	sums map[string][2]string // image name -> {key, sum}
}

func (c *sumCache) get(dir, name string) (string, error) {
	key := filesKey(dir)
	c.mu.Lock()
	v, ok := c.sums[name]
	c.mu.Unlock()
	if ok && v[0] == key {
		return v[1], nil
	}
	sum, err := readSumFile(dir, key)
	if err != nil {
		if sum, err = imagefile.Checksum(dir); err != nil {
			return "", err
		}
		// Best effort: without it the next agent reads the image again.
		_ = os.WriteFile(filepath.Join(dir, sumFile), []byte(key+"\n"+sum+"\n"), 0o644)
	}
	c.mu.Lock()
	if c.sums == nil {
		c.sums = map[string][2]string{}
	}
	c.sums[name] = [2]string{key, sum}
	c.mu.Unlock()
	return sum, nil
}

// sumFile holds, in an image's directory, its checksum and the filesKey
// it was computed for.
const sumFile = ".sha256"

func readSumFile(dir, key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, sumFile))
	if err != nil {
		return "", err
	}
	k, sum, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok || k != key || len(sum) != 64 {
		return "", fmt.Errorf("%s is stale", sumFile)
	}
	return sum, nil
}

func filesKey(dir string) string {
	var b strings.Builder
	for _, f := range imagefile.Files {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// Images: see hypervisor.Driver.
func (d *Driver) Images(ctx context.Context) ([]hypervisor.ImageInfo, error) {
	entries, err := os.ReadDir(d.cfg.ImageDir)
	if err != nil {
		return nil, fmt.Errorf("libvirt: images: %w", err)
	}
	var out []hypervisor.ImageInfo
	for _, e := range entries {
		name := e.Name()
		if hypervisor.ValidateImageName(name) != nil || strings.HasPrefix(name, ".") {
			continue // not an image: a bundle's or a fetch's work, a lock file
		}
		img, err := resolveImage(d.cfg.ImageDir, name)
		if err != nil {
			continue // incomplete: not an image yet
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := d.imageInfo(ctx, name, img.Dir)
		if err != nil {
			d.log.Warn("image left out of the list", "image", name, "err", err)
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

func (d *Driver) imageInfo(_ context.Context, name, dir string) (hypervisor.ImageInfo, error) {
	h, err := readImageHeader(filepath.Join(dir, "disk.qcow2"))
	if err != nil {
		return hypervisor.ImageInfo{}, err
	}
	sum, err := d.sums.get(dir, name)
	if err != nil {
		return hypervisor.ImageInfo{}, err
	}
	return hypervisor.ImageInfo{Name: name, Format: "qcow2", VirtualSize: h.virtualSize,
		AllocatedSize: imagefile.Allocated(dir), SHA256: sum}, nil
}

// OpenImage: see hypervisor.Driver.
func (d *Driver) OpenImage(_ context.Context, name string) (io.ReadCloser, int64, error) {
	if err := hypervisor.ValidateImageName(name); err != nil {
		return nil, 0, fmt.Errorf("libvirt: open image: %w", err)
	}
	img, err := resolveImage(d.cfg.ImageDir, name)
	if err != nil {
		return nil, 0, fmt.Errorf("libvirt: open image: %w", err)
	}
	r, size, err := imagefile.Open(img.Dir)
	if err != nil {
		return nil, 0, fmt.Errorf("libvirt: open image %q: %w: %w", name, hypervisor.ErrImageNotFound, err)
	}
	return r, size, nil
}

// workPrefix starts the hidden directories an image is written in before
// it is renamed into place.
func workPrefix(name string) string { return ".image-" + name + "-" }

// WriteImage: see hypervisor.Driver.
func (d *Driver) WriteImage(ctx context.Context, name, sha256sum string, r io.Reader) error {
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("libvirt: write image: %w", err)
	}
	if err := d.sameImage(ctx, name, sha256sum); err == nil || !errors.Is(err, hypervisor.ErrImageNotFound) {
		if err == nil {
			_, err = io.Copy(io.Discard, r) // held already: the stream is still read to its end
		}
		return err
	}
	h := sha256.New()
	return d.placeImage(name, func(tmp string) error {
		if err := imagefile.Extract(io.TeeReader(r, h), tmp); err != nil {
			return fmt.Errorf("%w: %w", hypervisor.ErrInvalidSpec, err)
		}
		// The stream is the image's travelling form: its digest is the image's checksum.
		if got := hex.EncodeToString(h.Sum(nil)); sha256sum != "" && got != sha256sum {
			return fmt.Errorf("the copy's checksum is %s, the catalogue's %s: %w", got, sha256sum, hypervisor.ErrInvalidSpec)
		}
		return d.checkStandalone(ctx, filepath.Join(tmp, "disk.qcow2"))
	})
}

// sameImage: nil if image name is there with checksum sum ("" any);
// ErrImageNotFound if it is not there; ErrAlreadyExists if it differs.
func (d *Driver) sameImage(ctx context.Context, name, sum string) error {
	img, err := resolveImage(d.cfg.ImageDir, name)
	if err != nil {
		if _, lerr := os.Lstat(filepath.Join(d.cfg.ImageDir, name)); lerr == nil {
			return fmt.Errorf("libvirt: image %q: an incomplete one is in the way: %w", name, hypervisor.ErrAlreadyExists)
		}
		return err
	}
	if sum == "" {
		return nil
	}
	info, err := d.imageInfo(ctx, name, img.Dir)
	if err != nil {
		return err
	}
	if info.SHA256 != sum {
		return fmt.Errorf("libvirt: image %q is here with checksum %s, not %s: %w", name, info.SHA256, sum, hypervisor.ErrAlreadyExists)
	}
	return nil
}

// checkStandalone refuses a disk that is not a qcow2 of its own: a
// backing file would let the image read another file of the host.
func (d *Driver) checkStandalone(_ context.Context, disk string) error {
	h, err := readImageHeader(disk)
	if err != nil {
		return err
	}
	if h.backing {
		return fmt.Errorf("image disk has a backing file: %w", hypervisor.ErrInvalidSpec)
	}
	return nil
}

// imageHeader is what the catalogue reads of an image's qcow2 header.
type imageHeader struct {
	virtualSize uint64
	backing     bool
}

// readImageHeader reads the start of a qcow2 header (an image's disk has
// no backing file, which parseQcow2Header, for overlays, requires).
func readImageHeader(path string) (imageHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageHeader{}, err
	}
	defer f.Close()
	var b [32]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return imageHeader{}, fmt.Errorf("qcow2 header of %s: %w: %w", path, hypervisor.ErrInvalidSpec, err)
	}
	be := binary.BigEndian
	if be.Uint32(b[0:]) != qcow2Magic {
		return imageHeader{}, fmt.Errorf("%s is not a qcow2 file: %w", path, hypervisor.ErrInvalidSpec)
	}
	if v := be.Uint32(b[4:]); v != 2 && v != 3 {
		return imageHeader{}, fmt.Errorf("%s: qcow2 version %d: %w", path, v, hypervisor.ErrInvalidSpec)
	}
	return imageHeader{virtualSize: be.Uint64(b[24:]), backing: be.Uint64(b[8:]) != 0}, nil
}

// placeImage fills a hidden directory with fill, marks it complete and
// renames it into place as image name: the image appears whole or not at all.
func (d *Driver) placeImage(name string, fill func(tmp string) error) error {
	stale, _ := filepath.Glob(filepath.Join(d.cfg.ImageDir, workPrefix(name)+"*"))
	for _, dir := range stale {
		_ = os.RemoveAll(dir)
	}
	tmp, err := os.MkdirTemp(d.cfg.ImageDir, workPrefix(name))
	if err != nil {
		return fmt.Errorf("libvirt: image %q: %w", name, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("libvirt: image %q: %w", name, err)
	}
	if err := fill(tmp); err != nil {
		return fmt.Errorf("libvirt: image %q: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return fmt.Errorf("libvirt: image %q: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(d.cfg.ImageDir, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("libvirt: image %q: %w", name, hypervisor.ErrAlreadyExists)
		}
		return fmt.Errorf("libvirt: image %q: %w", name, err)
	}
	d.log.Info("image written", "image", name)
	return nil
}

// AdoptImage: see hypervisor.Driver.
func (d *Driver) AdoptImage(ctx context.Context, path, name string) error {
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("libvirt: adopt image: %w", err)
	}
	src, err := insideImageDir(d.cfg.ImageDir, path)
	if err != nil {
		return fmt.Errorf("libvirt: adopt image: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(d.cfg.ImageDir, name)); err == nil {
		return fmt.Errorf("libvirt: adopt image: %q: %w", name, hypervisor.ErrAlreadyExists)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("libvirt: adopt image %q: %w", path, hypervisor.ErrImageNotFound)
	}
	return d.placeImage(name, func(tmp string) error {
		if st.IsDir() {
			return adoptDir(ctx, d.cfg.ImageDir, src, tmp)
		}
		return adoptDisk(ctx, src, filepath.Join(tmp, "disk.qcow2"))
	})
}

// adoptDir copies an image directory's files (each inside the image
// directory, links resolved).
func adoptDir(ctx context.Context, root, src, tmp string) error {
	for _, f := range imagefile.Files {
		p, err := insideImageDir(root, filepath.Join(mustRel(root, src), f))
		if errors.Is(err, fs.ErrNotExist) {
			if f == "disk.qcow2" {
				return fmt.Errorf("%s has no disk.qcow2: %w", src, hypervisor.ErrInvalidSpec)
			}
			continue
		}
		if err != nil {
			return err
		}
		if f == "disk.qcow2" {
			err = adoptDisk(ctx, p, filepath.Join(tmp, f))
		} else {
			err = copyFile(p, filepath.Join(tmp, f))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// adoptDisk writes a disk file as a standalone qcow2: a raw file is
// converted, a qcow2 copied; a qcow2 with a backing file is refused (it
// would read another file of the host).
func adoptDisk(ctx context.Context, src, dst string) error {
	format := "raw"
	if h, err := readImageHeader(src); err == nil {
		format = "qcow2"
		if !h.backing {
			return copyFile(src, dst)
		}
		return fmt.Errorf("%s has a backing file: %w", src, hypervisor.ErrInvalidSpec)
	}
	if _, err := runQemuImg(ctx, "convert", "-q", "-f", format, "-O", "qcow2", src, dst); err != nil {
		return fmt.Errorf("converting %s: %w", src, err)
	}
	return nil
}

func mustRel(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return rel
}

// insideImageDir resolves path, relative to the image directory root, to
// a real path inside root: no absolute path, no "..", no symbolic link
// leading out (each is ErrInvalidSpec); a missing file is fs.ErrNotExist.
func insideImageDir(root, path string) (string, error) {
	if path == "" || filepath.IsAbs(path) || slices.Contains(strings.Split(filepath.ToSlash(path), "/"), "..") {
		return "", fmt.Errorf("path %q: give a path inside the image directory, without '..': %w", path, hypervisor.ErrInvalidSpec)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(realRoot, path))
	if err != nil {
		return "", err
	}
	if !within(realRoot, p) || p == realRoot {
		return "", fmt.Errorf("path %q leads out of the image directory: %w", path, hypervisor.ErrInvalidSpec)
	}
	return p, nil
}

// RemoveImage: see hypervisor.Driver.
func (d *Driver) RemoveImage(_ context.Context, name string) error {
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("libvirt: remove image: %w", err)
	}
	dir := filepath.Join(d.cfg.ImageDir, name)
	// Renamed aside first, so the image is gone at once, never half there.
	tmp := filepath.Join(d.cfg.ImageDir, workPrefix(name)+"removed")
	_ = os.RemoveAll(tmp)
	if err := os.Rename(dir, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("libvirt: remove image %q: %w", name, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("libvirt: remove image %q: %w", name, err)
	}
	d.sums.mu.Lock()
	delete(d.sums.sums, name)
	d.sums.mu.Unlock()
	return nil
}
