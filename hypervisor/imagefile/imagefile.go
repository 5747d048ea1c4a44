// Package imagefile is the form an image directory travels in between
// hosts: its files in a fixed order, as one GNU tar stream, whose SHA-256
// is the image's checksum in the catalogue. The same bytes on every host
// give the same checksum, whatever the files' times or owners.
package imagefile

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Files are the files an image directory may have, in archive order: its
// disk, and for a kernel-booted image the kernel, initrd and command line.
// ".complete" is not among them: the receiver writes it last.
var Files = []string{"disk.qcow2", "vmlinuz", "initrd.img", "cmdline"}

// MaxFiles bounds an archive's entries (Files, each once).
var MaxFiles = len(Files)

// ErrInvalid: an archive that is not an image's (an unknown or repeated
// file, a link, no disk).
var ErrInvalid = errors.New("not an image archive")

const block = 512

// present lists the files of Files that dir has, with their sizes.
func present(dir string) ([]string, []int64, error) {
	var names []string
	var sizes []int64
	for _, f := range Files {
		st, err := os.Lstat(filepath.Join(dir, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("%s: not a regular file: %w", f, ErrInvalid)
		}
		names, sizes = append(names, f), append(sizes, st.Size())
	}
	if !slices.Contains(names, Files[0]) {
		return nil, nil, fmt.Errorf("no %s: %w", Files[0], ErrInvalid)
	}
	return names, sizes, nil
}

// Size is the archive's length for files of these sizes: a header block
// each, the contents padded to blocks, two zero blocks at the end.
func Size(sizes []int64) int64 {
	n := int64(2 * block)
	for _, s := range sizes {
		n += block + (s+block-1)/block*block
	}
	return n
}

// Open returns dir's archive and its exact length. The caller closes it.
func Open(dir string) (io.ReadCloser, int64, error) {
	names, sizes, err := present(dir)
	if err != nil {
		return nil, 0, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw, dir, names, sizes)) }()
	return pr, Size(sizes), nil
}

func write(w io.Writer, dir string, names []string, sizes []int64) error {
	tw := tar.NewWriter(w)
	for i, name := range names {
		// Nothing but the name, the size and a fixed mode: the bytes, and so
		// the checksum, depend on the contents alone.
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: sizes[i], Mode: 0o644, Format: tar.FormatGNU}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, sizes[i])
		f.Close()
		if err != nil {
			return fmt.Errorf("%s changed while read: %w", name, err)
		}
	}
	return tw.Close()
}

// Checksum is the SHA-256 (hex) of dir's archive.
func Checksum(dir string) (string, error) {
	r, _, err := Open(dir)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Extract writes the archive r into dir (which exists, empty): only the
// files of Files, regular, each once; it reads r to its end, so a reader
// that verifies the stream at its end can still fail it.
func Extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if hdr.Typeflag != tar.TypeReg || !slices.Contains(Files, hdr.Name) || seen[hdr.Name] {
			return fmt.Errorf("entry %q (type %c): %w", hdr.Name, hdr.Typeflag, ErrInvalid)
		}
		seen[hdr.Name] = true
		f, err := os.OpenFile(filepath.Join(dir, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	// The padding after the end blocks, and whatever the verifier wants to
	// check at the stream's end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if !seen[Files[0]] {
		return fmt.Errorf("no %s: %w", Files[0], ErrInvalid)
	}
	return nil
}

// Allocated is what dir's files take on disk, in bytes.
func Allocated(dir string) uint64 {
	var n uint64
	for _, f := range Files {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
			n += uint64(st.Size())
		}
	}
	return n
}
