package state

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// Image is one image of the catalogue: what it is, which hosts hold a
// copy, and the copies asked for and not made yet.
type Image struct {
	Name          string `json:"name"`
	Format        string `json:"format,omitempty"`
	VirtualSize   uint64 `json:"virtual_size,omitempty"`
	AllocatedSize uint64 `json:"allocated_size,omitempty"`
	SHA256        string `json:"sha256,omitempty"`
	// Hosts hold a copy; sorted.
	Hosts      []string      `json:"hosts,omitempty"`
	CreateTime time.Time     `json:"create_time"`
	CreateRev  int64         `json:"create_rev"`
	Imports    []ImageImport `json:"imports,omitempty"`
	// Fault is why the last import failed.
	Fault *Fault `json:"fault,omitempty"`
	// Deleting: being removed from its hosts; the record goes once none holds it.
	Deleting bool `json:"deleting,omitempty"`
}

// ImageImport is a copy asked for on HostID: from a file in its image
// directory (Path) or from another host (FromHost).
type ImageImport struct {
	HostID      string    `json:"host_id"`
	Path        string    `json:"path,omitempty"`
	FromHost    string    `json:"from_host,omitempty"`
	RequestTime time.Time `json:"request_time"`
}

// ImageStatus is where an image is.
type ImageStatus string

const (
	ImageAvailable ImageStatus = "AVAILABLE"
	ImageImporting ImageStatus = "IMPORTING"
	ImageFailed    ImageStatus = "FAILED"
	ImageDeleting  ImageStatus = "DELETING"
)

// Status derives the image's status from its record.
func (im *Image) Status() ImageStatus {
	switch {
	case im.Deleting:
		return ImageDeleting
	case len(im.Hosts) > 0:
		return ImageAvailable
	case len(im.Imports) > 0:
		return ImageImporting
	}
	return ImageFailed
}

// HeldBy reports whether host holds a copy.
func (im *Image) HeldBy(host string) bool {
	_, ok := slices.BinarySearch(im.Hosts, host)
	return ok
}

// AddHost records that host holds a copy.
func (im *Image) AddHost(host string) {
	if i, ok := slices.BinarySearch(im.Hosts, host); !ok {
		im.Hosts = slices.Insert(im.Hosts, i, host)
	}
}

// RemoveHost records that host holds no copy.
func (im *Image) RemoveHost(host string) {
	if i, ok := slices.BinarySearch(im.Hosts, host); ok {
		im.Hosts = slices.Delete(im.Hosts, i, i+1)
	}
}

// EndImport drops the import asked for on host, if any.
func (im *Image) EndImport(host string) {
	im.Imports = slices.DeleteFunc(im.Imports, func(x ImageImport) bool { return x.HostID == host })
	if len(im.Imports) == 0 {
		im.Imports = nil
	}
}

func (im *Image) clone() Image {
	c := *im
	c.Hosts = slices.Clone(im.Hosts)
	c.Imports = slices.Clone(im.Imports)
	if im.Fault != nil {
		f := *im.Fault
		c.Fault = &f
	}
	return c
}

// Image returns an image's record.
func (s *Store) Image(name string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	im, ok := s.images[name]
	if !ok {
		return Image{}, fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return im.clone(), nil
}

// Images returns every image, ordered by name, and the revision read.
func (s *Store) Images() ([]Image, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, 0, len(s.images))
	for _, im := range s.images {
		out = append(out, im.clone())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, s.rev
}

// Image returns an image's record, staged change included.
func (tx *Tx) Image(name string) (Image, bool) {
	if im, ok := tx.images[name]; ok {
		if im == nil {
			return Image{}, false
		}
		return im.clone(), true
	}
	im, ok := tx.s.images[name]
	if !ok {
		return Image{}, false
	}
	return im.clone(), true
}

// ImageNames returns the names of every image, staged ones included, sorted.
func (tx *Tx) ImageNames() []string {
	seen := map[string]bool{}
	for n := range tx.s.images {
		seen[n] = true
	}
	for n, im := range tx.images {
		seen[n] = im != nil
	}
	var out []string
	for n, ok := range seen {
		if ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// PutImage stages an image's record.
func (tx *Tx) PutImage(im Image) { c := im.clone(); tx.images[im.Name] = &c }

// RemoveImage stages an image's removal from the catalogue.
func (tx *Tx) RemoveImage(name string) { tx.images[name] = nil }

// ImageUsers returns the ids of the instances, not deleted, that use the
// image: as their image or rescue image, or as the image an open
// operation of theirs goes to (a rebuild's, an upgrade's). Sorted.
func (tx *Tx) ImageUsers(name string) []string {
	users := map[string]bool{}
	uses := func(i *Instance) bool {
		return i.Status() != lifecycle.StatusDeleted && (i.Spec.Image == name || i.RescueImage == name)
	}
	for id, i := range tx.s.instances {
		if staged, ok := tx.instances[id]; ok {
			i = staged
		}
		if uses(i) {
			users[id] = true
		}
	}
	for id, i := range tx.instances {
		if uses(i) {
			users[id] = true
		}
	}
	for _, o := range tx.s.ops {
		if o.State.Done() {
			continue
		}
		if o.Image == name || o.Resize != nil && o.Resize.To.Image == name {
			users[o.InstanceID] = true
		}
	}
	out := make([]string, 0, len(users))
	for id := range users {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
