package fsm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Image catalogue command types (log version 11).
const (
	TypeImportImage = "image.import"
	TypeDeleteImage = "image.delete"
	TypeImagesHeld  = "image.held"
)

func init() {
	commands[TypeImportImage] = def(LogVersion11, newPB[raftv1.ImportImage], applyImportImage)
	commands[TypeDeleteImage] = def(LogVersion11, newPB[raftv1.DeleteImage], applyDeleteImage)
	commands[TypeImagesHeld] = def(LogVersion11, newPB[raftv1.ImagesHeld], applyImagesHeld)
}

// ImportImage asks for a copy of image Name on Import.HostID, from a file
// in its image directory or from another host that holds it.
type ImportImage struct {
	Name   string
	Import state.ImageImport
}

// DeleteImage marks an image for removal from every host that holds it.
type DeleteImage struct {
	Name string
}

// ImagesHeld is what a host said of its image directory: the images it
// holds (Full: all of them, so any other it was listed for is gone),
// those it removed, and the image tasks that failed.
type ImagesHeld struct {
	HostID   string
	Images   []ImageFile
	Full     bool
	Removed  []string
	Failures []ImageFailure
}

// ImageFile is one image a host holds.
type ImageFile struct {
	Name, Format               string
	VirtualSize, AllocatedSize uint64
	SHA256                     string
}

// ImageFailure is an image task that failed on the host.
type ImageFailure struct {
	Name  string
	Fault state.Fault
}

func (c *ImportImage) toPB() *raftv1.ImportImage {
	return &raftv1.ImportImage{Name: c.Name, Import: imageImportToPB(&c.Import)}
}

func (c *ImportImage) fromPB(m *raftv1.ImportImage) {
	c.Name, c.Import = m.GetName(), imageImportFromPB(m.GetImport())
}

func (c *DeleteImage) toPB() *raftv1.DeleteImage    { return &raftv1.DeleteImage{Name: c.Name} }
func (c *DeleteImage) fromPB(m *raftv1.DeleteImage) { c.Name = m.GetName() }

func (c *ImagesHeld) toPB() *raftv1.ImagesHeld {
	m := &raftv1.ImagesHeld{HostId: c.HostID, Full: c.Full, Removed: c.Removed}
	for _, f := range c.Images {
		m.Images = append(m.Images, &raftv1.ImageFile{Name: f.Name, Format: f.Format, VirtualSize: f.VirtualSize,
			AllocatedSize: f.AllocatedSize, Sha256: f.SHA256})
	}
	for _, f := range c.Failures {
		m.Failures = append(m.Failures, &raftv1.ImageFailure{Name: f.Name, Fault: faultToPB(&f.Fault)})
	}
	return m
}

func (c *ImagesHeld) fromPB(m *raftv1.ImagesHeld) {
	c.HostID, c.Full, c.Removed = m.GetHostId(), m.GetFull(), slices.Clone(m.GetRemoved())
	c.Images, c.Failures = c.Images[:0], c.Failures[:0]
	for _, f := range m.GetImages() {
		c.Images = append(c.Images, ImageFile{Name: f.GetName(), Format: f.GetFormat(), VirtualSize: f.GetVirtualSize(),
			AllocatedSize: f.GetAllocatedSize(), SHA256: f.GetSha256()})
	}
	for _, f := range m.GetFailures() {
		var fault state.Fault
		if p := faultFromPB(f.GetFault()); p != nil {
			fault = *p
		}
		c.Failures = append(c.Failures, ImageFailure{Name: f.GetName(), Fault: fault})
	}
}

func imageImportToPB(x *state.ImageImport) *raftv1.ImageImport {
	return &raftv1.ImageImport{HostId: x.HostID, Path: x.Path, FromHostId: x.FromHost, RequestTimeUnixNano: unixNano(x.RequestTime)}
}

func imageImportFromPB(m *raftv1.ImageImport) state.ImageImport {
	return state.ImageImport{HostID: m.GetHostId(), Path: m.GetPath(), FromHost: m.GetFromHostId(),
		RequestTime: fromUnixNano(m.GetRequestTimeUnixNano())}
}

func imageToPB(im *state.Image) *raftv1.Image {
	m := &raftv1.Image{Name: im.Name, Format: im.Format, VirtualSize: im.VirtualSize, AllocatedSize: im.AllocatedSize,
		Sha256: im.SHA256, Hosts: im.Hosts, CreateTimeUnixNano: unixNano(im.CreateTime), CreateRev: im.CreateRev,
		Fault: faultToPB(im.Fault), Deleting: im.Deleting}
	for k := range im.Imports {
		m.Imports = append(m.Imports, imageImportToPB(&im.Imports[k]))
	}
	return m
}

func imageFromPB(m *raftv1.Image) state.Image {
	im := state.Image{Name: m.GetName(), Format: m.GetFormat(), VirtualSize: m.GetVirtualSize(), AllocatedSize: m.GetAllocatedSize(),
		SHA256: m.GetSha256(), Hosts: slices.Clone(m.GetHosts()), CreateTime: fromUnixNano(m.GetCreateTimeUnixNano()),
		CreateRev: m.GetCreateRev(), Fault: faultFromPB(m.GetFault()), Deleting: m.GetDeleting()}
	for _, x := range m.GetImports() {
		im.Imports = append(im.Imports, imageImportFromPB(x))
	}
	return im
}

// CheckImagePath refuses an import path that could lead out of the host's
// image directory: it must be relative, clean and without "..". (The agent
// also refuses a symbolic link that leads out of it.)
func CheckImagePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty: %w", ErrInvalid)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute; give it relative to the image directory: %w", p, ErrInvalid)
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\'):
		return fmt.Errorf("path %q has a NUL or a backslash: %w", p, ErrInvalid)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("path %q has a '..': %w", p, ErrInvalid)
	}
	return nil
}

func applyImportImage(tx *state.Tx, c *ImportImage) (any, error) {
	if err := checkImageName(c.Name); err != nil {
		return nil, err
	}
	x := c.Import
	if (x.Path == "") == (x.FromHost == "") {
		return nil, fmt.Errorf("an import needs exactly one of a path and a host to copy from: %w", ErrInvalid)
	}
	if x.Path != "" {
		if err := CheckImagePath(x.Path); err != nil {
			return nil, err
		}
	}
	if _, ok := tx.Host(x.HostID); !ok {
		return nil, fmt.Errorf("host %q: %w", x.HostID, ErrNotFound)
	}
	im, found := tx.Image(c.Name)
	switch {
	case found && im.Deleting:
		return nil, fmt.Errorf("image %q is being deleted: %w", c.Name, ErrConflict)
	case x.FromHost != "" && (!found || !im.HeldBy(x.FromHost)):
		return nil, fmt.Errorf("host %q holds no image %q: %w", x.FromHost, c.Name, ErrConflict)
	case x.FromHost == x.HostID:
		return nil, fmt.Errorf("an image is copied from another host: %w", ErrInvalid)
	case found && im.HeldBy(x.HostID) && x.Path != "":
		return nil, fmt.Errorf("host %q holds image %q already: %w", x.HostID, c.Name, ErrAlreadyExists)
	case found && im.HeldBy(x.HostID):
		return c.Name, nil // copied already: nothing to do
	}
	if !found {
		im = state.Image{Name: c.Name}
	}
	im.EndImport(x.HostID) // the newest request for the host wins
	x.RequestTime = tx.Now()
	im.Imports = append(im.Imports, x)
	im.Fault = nil
	tx.PutImage(im)
	return c.Name, nil
}

func applyDeleteImage(tx *state.Tx, c *DeleteImage) (any, error) {
	im, ok := tx.Image(c.Name)
	if !ok {
		return nil, fmt.Errorf("image %q: %w", c.Name, ErrNotFound)
	}
	if users := tx.ImageUsers(c.Name); len(users) > 0 {
		return nil, fmt.Errorf("image %q is used by instance(s) %s: %w", c.Name, strings.Join(users, ", "), ErrInUse)
	}
	if len(im.Hosts) == 0 {
		tx.RemoveImage(c.Name)
		return nil, nil
	}
	im.Deleting, im.Imports = true, nil
	tx.PutImage(im)
	return nil, nil
}

func applyImagesHeld(tx *state.Tx, c *ImagesHeld) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if c.Full && !h.ImagesListed {
		h.ImagesListed = true // an agent of the catalogue: it may be sent fetches
		tx.PutHost(h)
	}
	held := map[string]bool{}
	for _, f := range c.Images {
		if hypervisor.ValidateImageName(f.Name) != nil {
			continue // not a name the catalogue could serve
		}
		held[f.Name] = true
		im, found := tx.Image(f.Name)
		if !found {
			im = state.Image{Name: f.Name}
		}
		if im.SHA256 == "" || len(im.Hosts) == 0 || len(im.Hosts) == 1 && im.Hosts[0] == c.HostID {
			// The first report (or the only holder's) says what the image is.
			im.Format, im.VirtualSize, im.AllocatedSize, im.SHA256 = f.Format, f.VirtualSize, f.AllocatedSize, f.SHA256
		}
		im.AddHost(c.HostID)
		im.EndImport(c.HostID)
		tx.PutImage(im)
	}
	gone := slices.Clone(c.Removed)
	if c.Full {
		for _, name := range tx.ImageNames() {
			if im, _ := tx.Image(name); im.HeldBy(c.HostID) && !held[name] {
				gone = append(gone, name)
			}
		}
	}
	for _, name := range gone {
		im, ok := tx.Image(name)
		if !ok || held[name] {
			continue
		}
		im.RemoveHost(c.HostID)
		if im.Deleting && len(im.Hosts) == 0 {
			tx.RemoveImage(name)
			continue
		}
		tx.PutImage(im)
	}
	for _, f := range c.Failures {
		im, ok := tx.Image(f.Name)
		if !ok || !slices.ContainsFunc(im.Imports, func(x state.ImageImport) bool { return x.HostID == c.HostID }) {
			continue
		}
		im.EndImport(c.HostID)
		fault := f.Fault
		fault.HostID, fault.Time = c.HostID, tx.Now()
		im.Fault = &fault
		if len(im.Hosts) == 0 && len(im.Imports) == 0 {
			// Nothing holds it and nothing will: only its fault is left to
			// show, until it is deleted or imported again.
			im.Format, im.SHA256 = "", ""
		}
		tx.PutImage(im)
	}
	return nil, nil
}

// forgetImagesOf drops a removed host from the catalogue: its copies and
// the imports asked of it (an image being deleted goes with its last copy).
func forgetImagesOf(tx *state.Tx, host string) {
	for _, name := range tx.ImageNames() {
		im, _ := tx.Image(name)
		held := im.HeldBy(host)
		importing := slices.ContainsFunc(im.Imports, func(x state.ImageImport) bool { return x.HostID == host || x.FromHost == host })
		if !held && !importing {
			continue
		}
		im.RemoveHost(host)
		im.Imports = slices.DeleteFunc(im.Imports, func(x state.ImageImport) bool { return x.HostID == host || x.FromHost == host })
		if im.Deleting && len(im.Hosts) == 0 {
			tx.RemoveImage(name)
			continue
		}
		tx.PutImage(im)
	}
}

// imageHeld records, at a step's success, what the step did to the
// catalogue: a fetch put the image on the host, a bundle made a new image
// there (its size and checksum come with the agent's next report).
func imageHeld(tx *state.Tx, op *state.Operation, inst *state.Instance, a lifecycle.StepAction, host string) {
	var name string
	switch a {
	case lifecycle.ActFetchImage:
		name = inst.Spec.Image
	case lifecycle.ActBundleDisk:
		name = op.Image
	default:
		return
	}
	if tx.LogVersion() < LogVersion11 {
		return
	}
	im, found := tx.Image(name)
	if !found {
		im = state.Image{Name: name}
	}
	im.AddHost(host)
	im.EndImport(host)
	tx.PutImage(im)
}

// planImageFetch makes a create whose host lacks the instance's image
// fetch it first from a host that holds it (ImageSource). An image the
// catalogue does not know, or that no ready host with a peer address
// holds, is left to the preflight (which fails IMAGE_NOT_FOUND as before).
func planImageFetch(tx *state.Tx, inst *state.Instance, op *state.Operation) {
	op.ImageSource = ""
	if inst.HostID == "" || tx.LogVersion() < LogVersion11 {
		return
	}
	im, ok := tx.Image(inst.Spec.Image)
	if !ok || im.Deleting || im.HeldBy(inst.HostID) {
		return
	}
	// An agent older than the catalogue knows no fetch step (agents run
	// one version behind the coordinators during an upgrade).
	if h, ok := tx.Host(inst.HostID); !ok || !h.ImagesListed {
		return
	}
	if src := imageSource(tx, &im, inst.HostID); src != "" {
		op.ImageSource = src
		planShaped(op, lifecycle.Shape{FetchImage: true})
		if !op.Deadline.IsZero() {
			op.Deadline = op.Deadline.Add(lifecycle.FetchImageBudget) // the copy's time comes on top
		}
	}
}

// imageSource picks the host a copy comes from: the first ready holder
// that serves other agents.
func imageSource(tx *state.Tx, im *state.Image, not string) string {
	for _, h := range im.Hosts {
		if hr, ok := tx.Host(h); ok && h != not && hr.Status == state.HostReady && hr.PeerAddr != "" {
			return h
		}
	}
	return ""
}
