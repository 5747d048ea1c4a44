package libvirt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// domainPrefix marks the domains Flotilla owns; anything else on the host is
// left alone.
const domainPrefix = "flotilla-"

func domainName(id string) string { return domainPrefix + id }

// idFromDomainName returns the instance id of a Flotilla domain name.
func idFromDomainName(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, domainPrefix)
	if !ok || !hypervisor.IDPattern.MatchString(id) {
		return "", false
	}
	return id, true
}

// image is a resolved, complete image directory.
type image struct {
	Dir     string // real path of ImageDir/<name>
	Disk    string // disk.qcow2, the backing file of every overlay
	Kernel  string // vmlinuz, empty when the image boots from its disk
	Initrd  string // initrd.img, optional
	Cmdline string // contents of cmdline, optional
}

// resolveImage finds image name under imageDir. Symlinks are resolved first
// so that a link can never lead the backing file outside imageDir.
func resolveImage(imageDir, name string) (image, error) {
	notFound := func(why string) (image, error) {
		return image{}, fmt.Errorf("image %q: %s: %w", name, why, hypervisor.ErrImageNotFound)
	}
	root, err := filepath.EvalSymlinks(imageDir)
	if err != nil {
		return notFound("image directory unavailable")
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return notFound("image directory unavailable")
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(root, name))
	if err != nil {
		return notFound("no such image")
	}
	if !within(root, dir) {
		return notFound("resolves outside the image directory")
	}

	file := func(base string, required bool) (string, error) {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, base))
		if errors.Is(err, fs.ErrNotExist) && !required {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("missing %s", base)
		}
		if !within(root, p) {
			return "", fmt.Errorf("%s resolves outside the image directory", base)
		}
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", base)
		}
		return p, nil
	}

	img := image{Dir: dir}
	// .complete is written last by the image builder: without it the image
	// may be half-copied.
	if _, err := file(".complete", true); err != nil {
		return notFound(err.Error())
	}
	if img.Disk, err = file("disk.qcow2", true); err != nil {
		return notFound(err.Error())
	}
	if img.Kernel, err = file("vmlinuz", false); err != nil {
		return notFound(err.Error())
	}
	if img.Kernel != "" {
		if img.Initrd, err = file("initrd.img", false); err != nil {
			return notFound(err.Error())
		}
		cmdline, err := file("cmdline", false)
		if err != nil {
			return notFound(err.Error())
		}
		if cmdline != "" {
			b, err := os.ReadFile(cmdline)
			if err != nil {
				return notFound("cmdline unreadable")
			}
			img.Cmdline = strings.TrimSpace(string(b))
		}
	}
	return img, nil
}

// within reports whether path is root itself or below it.
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
