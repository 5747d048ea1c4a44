package fake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The image catalogue's side of the fake: images are names, each with a
// small content of its own (imageContent) whose checksum is its SHA256.

// imageContent is what the fake's image name travels as.
func imageContent(name string) []byte {
	return bytes.Repeat([]byte("fake image "+name+"\n"), 100)
}

func imageSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// heldLocked reports whether the fake holds image name: with a list of
// images, those listed, bundled or written; without one, any name.
func (d *Driver) heldLocked(name string) bool {
	return d.images[name] || d.bundled[name] || d.written[name] != nil
}

// Images: see hypervisor.Driver. Without a list of images (any name is
// accepted), only those bundled or written.
func (d *Driver) Images(ctx context.Context) ([]hypervisor.ImageInfo, error) {
	if err := d.enter(ctx, "Images"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, m := range []map[string]bool{d.images, d.bundled} {
		for n := range m {
			names = append(names, n)
		}
	}
	for n := range d.written {
		names = append(names, n)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]hypervisor.ImageInfo, 0, len(names))
	for _, n := range names {
		b := d.contentLocked(n)
		out = append(out, hypervisor.ImageInfo{Name: n, Format: "qcow2", VirtualSize: uint64(d.opts.DiskSize),
			AllocatedSize: uint64(len(b)), SHA256: imageSum(b)})
	}
	return out, nil
}

func (d *Driver) contentLocked(name string) []byte {
	if b := d.written[name]; b != nil {
		return b
	}
	return imageContent(name)
}

// OpenImage: see hypervisor.Driver.
func (d *Driver) OpenImage(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := d.enter(ctx, "OpenImage"); err != nil {
		return nil, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.heldLocked(name) {
		return nil, 0, fmt.Errorf("fake: open image %q: %w", name, hypervisor.ErrImageNotFound)
	}
	b := d.contentLocked(name)
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// WriteImage: see hypervisor.Driver.
func (d *Driver) WriteImage(ctx context.Context, name, sum string, r io.Reader) (err error) {
	defer func() { err = d.leave("WriteImage", err) }()
	if err := d.enter(ctx, "WriteImage"); err != nil {
		return err
	}
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("fake: write image: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, d.opts.MaxImportBytes))
	if err != nil {
		return fmt.Errorf("fake: write image %q: %w", name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.heldLocked(name) {
		if have := imageSum(d.contentLocked(name)); sum != "" && have != sum {
			return fmt.Errorf("fake: image %q is here with checksum %s: %w", name, have, hypervisor.ErrAlreadyExists)
		}
		return nil
	}
	if got := imageSum(b); sum != "" && got != sum {
		return fmt.Errorf("fake: write image %q: the copy's checksum is %s, not %s: %w", name, got, sum, hypervisor.ErrInvalidSpec)
	}
	d.written[name] = b
	if len(d.images) > 0 {
		d.images[name] = true
	}
	return nil
}

// AdoptImage: see hypervisor.Driver. The fake has no image directory: any
// clean relative path stands for a file, whose image is content of the name.
func (d *Driver) AdoptImage(ctx context.Context, path, name string) (err error) {
	defer func() { err = d.leave("AdoptImage", err) }()
	if err := d.enter(ctx, "AdoptImage"); err != nil {
		return err
	}
	if err := hypervisor.ValidateImageName(name); err != nil {
		return fmt.Errorf("fake: adopt image: %w", err)
	}
	if path == "" || strings.HasPrefix(path, "/") || slices.Contains(strings.Split(path, "/"), "..") {
		return fmt.Errorf("fake: adopt image: path %q: %w", path, hypervisor.ErrInvalidSpec)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.heldLocked(name) && (len(d.images) > 0 || d.written[name] != nil || d.bundled[name]) {
		return fmt.Errorf("fake: adopt image: %q: %w", name, hypervisor.ErrAlreadyExists)
	}
	d.written[name] = imageContent(name)
	if len(d.images) > 0 {
		d.images[name] = true
	}
	return nil
}

// RemoveImage: see hypervisor.Driver.
func (d *Driver) RemoveImage(ctx context.Context, name string) error {
	if err := d.enter(ctx, "RemoveImage"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.images, name)
	delete(d.bundled, name)
	delete(d.written, name)
	return nil
}
