// Package hypervisor defines the contract between the Flotilla agent and the
// virtualization layer on one host. Flotilla owns this interface; the libvirt
// package implements it for real hosts and the fake package in memory.
package hypervisor

import (
	"context"
	"errors"
	"io"
	"time"
)

// PowerState is what the hypervisor itself reports about a domain.
type PowerState string

const (
	PowerRunning      PowerState = "running"
	PowerPaused       PowerState = "paused"        // vCPUs stopped, memory kept in RAM
	PowerShuttingDown PowerState = "shutting-down" // the guest is running its shutdown
	PowerShutOff      PowerState = "shut-off"
	PowerCrashed      PowerState = "crashed"
	PowerSavedToDisk  PowerState = "saved-to-disk" // managed save image present, domain stopped
	PowerNoDomain     PowerState = "no-domain"     // the hypervisor knows no such domain
	PowerUnknown      PowerState = "unknown"
)

// Sentinel errors. Drivers wrap them with %w so callers can classify faults.
var (
	ErrNotFound      = errors.New("domain not found")
	ErrAlreadyExists = errors.New("domain already exists")
	ErrInvalidSpec   = errors.New("invalid domain spec")
	ErrInvalidState  = errors.New("operation not valid in the domain's current state")
	ErrImageNotFound = errors.New("image not found")
	ErrUnavailable   = errors.New("hypervisor unavailable") // transient: connection lost
	// ErrInsufficientDisk: the disk directory has less free space than a
	// create or boot needs (see Preflight). Permanent: space does not come
	// back by trying again.
	ErrInsufficientDisk = errors.New("insufficient disk space")
)

// DomainSpec is the validated description of one VM. The domain name is
// derived from ID, never from user-chosen text.
type DomainSpec struct {
	ID        string // instance id: lowercase letters, digits and '-' only, at most 63 chars
	Name      string // display name, stored as the domain title (XML-escaped)
	VCPUs     uint32
	MemoryMiB uint64
	DiskGiB   uint64 // size of the instance disk; 0 means "the image's own size"
	Image     string // image name inside the driver's image directory, no path separators
	NICs      []NIC  // network interfaces, in guest order (see ValidateNIC)
	// Seed, when set, is delivered to the guest as a cloud-init NoCloud
	// seed (instance id ID); with NICs it also carries their addresses.
	Seed *GuestSeed
}

// DomainStatus is one observation of one domain.
type DomainStatus struct {
	ID         string
	State      PowerState
	Reason     string // hypervisor's reason, e.g. "destroyed", "shutdown", "user"
	ObservedAt time.Time
}

// Event is a power-state change pushed by the hypervisor.
type Event struct {
	DomainStatus
}

// DiskLayer names what OpenDisk gives out and ReceiveDisk stages.
type DiskLayer string

const (
	// DiskWhole is the whole disk of a shut-off domain whose disk is not
	// frozen (a cold move).
	DiskWhole DiskLayer = ""
	// DiskBase is the immutable part of a frozen disk (see FreezeDisk).
	DiskBase DiskLayer = "base"
	// DiskMid is, on a disk frozen twice (RefreezeDisk), what the domain
	// wrote between the two freezes: immutable, readable while it runs.
	DiskMid DiskLayer = "mid"
	// DiskTop is what a frozen disk's domain wrote since it was (last) frozen.
	DiskTop DiskLayer = "top"
)

// ImageInfo is one complete image of a host's image directory.
type ImageInfo struct {
	Name          string
	Format        string // of its disk: "qcow2"
	VirtualSize   uint64 // the size its disk shows the guest, bytes
	AllocatedSize uint64 // what its files take, bytes
	SHA256        string // hex, of the image's travelling form (see hypervisor/imagefile)
}

// Capacity is what a host offers to guests.
type Capacity struct {
	VCPUs     uint32
	MemoryMiB uint64
	DiskGiB   uint64
}

// Driver drives the hypervisor of one host. Every method honours ctx's
// deadline. Methods are idempotent where their name allows: Delete of a
// missing domain succeeds, Start of a running one succeeds.
type Driver interface {
	// Kind is "kvm", "qemu" (software emulation), "xen" or "fake".
	Kind() string
	Capacity(ctx context.Context) (Capacity, error)

	// Preflight checks, changing nothing, that this host can now create the
	// domain spec describes (boot false) or boot the existing one (boot
	// true): the spec is valid (ErrInvalidSpec), its image is present
	// (ErrImageNotFound), every bridge its NICs name exists here
	// (ErrNetworkUnavailable), and the disk directory has free at least what
	// the disk needs at once plus reserveBytes (an error wrapping
	// ErrInsufficientDisk that says how much is needed, how much is free,
	// and where: see CheckDiskRoom).
	Preflight(ctx context.Context, spec DomainSpec, boot bool, reserveBytes uint64) error

	// Create defines the domain with a copy-on-write disk over the image and boots it.
	Create(ctx context.Context, spec DomainSpec) error
	// Start boots a stopped domain, or restores it from its managed save image.
	Start(ctx context.Context, id string) error
	// Shutdown asks the guest to power off (ACPI) and waits until it has, up
	// to grace; then, if force is set, destroys it. Without force a guest
	// still running after grace yields an error wrapping context.DeadlineExceeded.
	Shutdown(ctx context.Context, id string, grace time.Duration, force bool) error
	// Destroy powers the domain off at once (pulling the plug).
	Destroy(ctx context.Context, id string) error
	// Reboot restarts the guest: soft asks the guest (ACPI), hard resets it.
	// A hard reboot of a domain that is shut off (or crashed) boots it, so
	// a hard restart brings up an instance whatever power state it is in;
	// paused and saved-to-disk are ErrInvalidState (unpause or start them).
	Reboot(ctx context.Context, id string, hard bool) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Save writes memory to disk (managed save) and stops the domain.
	Save(ctx context.Context, id string) error
	// Delete destroys and undefines the domain and removes its disks and
	// save image, and every layer staged for it, frozen for it or kept as
	// its original; with no domain it still removes those files.
	Delete(ctx context.Context, id string) error
	// SetTitle writes the domain's title (the instance's display name) into
	// its persistent definition and, while it runs, the live one. A missing
	// domain is ErrNotFound.
	SetTitle(ctx context.Context, id, title string) error

	// OpenDisk opens a layer of the instance's disk for copying to another
	// host (the source side of a move or resize). DiskWhole and DiskTop need
	// the domain shut off, so the bytes cannot change under the reader:
	// running, paused, shutting-down, crashed or saved-to-disk (whose
	// memory image would not travel) is ErrInvalidState. DiskBase needs a
	// frozen disk (FreezeDisk) and may be read while the domain runs, as
	// may DiskMid, which needs a refrozen disk (RefreezeDisk); DiskTop of a
	// refrozen disk is what was written since RefreezeDisk. DiskWhole of a
	// frozen disk, DiskTop of one that is not, or DiskMid of one that is
	// not refrozen, is ErrInvalidState. A missing domain is ErrNotFound. It also returns the
	// layer's size in bytes; an unknown layer is ErrInvalidSpec. The caller
	// closes the reader; when it is an *os.File the copy may skip the file's
	// holes.
	OpenDisk(ctx context.Context, id string, layer DiskLayer) (io.ReadCloser, int64, error)
	// ImportDomain writes disk, which came from another host's OpenDisk, as
	// the instance's disk and defines the domain shut off, without starting
	// it (the target side of a cold move). It reads disk to its end (or
	// error), so a caller that verifies the stream can fail it before the
	// domain is defined. A domain of the same id already defined, shut off,
	// from an identical disk is success, so a retried import is harmless;
	// any other existing domain is ErrAlreadyExists. A disk that is not one
	// this host would have made for spec (wrong format, foreign backing
	// file, too large) is ErrInvalidSpec. On failure everything it wrote is
	// removed again, and an error from disk is kept in the returned chain.
	ImportDomain(ctx context.Context, spec DomainSpec, disk io.Reader) error

	// FreezeDisk makes the instance's disk as it is now immutable (the
	// base) and sends the domain's further writes to a new, empty top layer:
	// an external disk-only snapshot while the domain runs, a new overlay
	// when it is shut off. The base can then be copied while the guest
	// keeps running, and only the top travels once it is down. A disk
	// already frozen is success (in any state). Running, shutting-down and
	// shut-off domains can be frozen; paused, saved-to-disk and crashed ones
	// are ErrInvalidState, and so is a domain that keeps a Reshape original.
	FreezeDisk(ctx context.Context, id string) error
	// RefreezeDisk freezes a frozen disk once more, for a second pass of a
	// copy while the domain runs: the top becomes the mid layer, immutable,
	// and the domain's writes go to a new, empty top. Already refrozen (a mid
	// exists): success. A disk that is not frozen is ErrInvalidState, as are
	// the states FreezeDisk refuses.
	RefreezeDisk(ctx context.Context, id string) error
	// ThawDisk merges the top layer (and the mid, if refrozen) back into the
	// base and makes the domain use the base alone again (a live block commit while it runs,
	// qemu-img commit when it is shut off): the undo of FreezeDisk, with
	// what was written since kept. A disk that is not frozen is success (in
	// any state). Running, shutting-down and shut-off domains can be thawed;
	// paused, saved-to-disk and crashed ones are ErrInvalidState.
	ThawDisk(ctx context.Context, id string) error

	// ReceiveDisk writes disk, one layer another host's OpenDisk gave out,
	// as a staged layer of spec's incoming disk on this host (the target
	// side of a resize), replacing a staged layer of the same kind. A base
	// and a whole disk are the same kind (a base replaces a whole disk and
	// drops a staged top); a top needs a staged base or whole disk (else
	// ErrInvalidState) and must have been made over it. A mid is a top that
	// is merged into the staged base at once (the staged base then is the
	// source's base and mid together, and the top that follows was made
	// over that mid); receiving the same mid again is harmless. It reads disk to
	// its end (or error); a disk that is not one this host would accept for
	// spec (wrong format, foreign backing file, too large for spec.DiskGiB)
	// is ErrInvalidSpec. Nothing is defined yet, and a domain of the id on
	// this host is ErrAlreadyExists (so a ReceiveDisk retried after its
	// AdoptDisk fails: the caller knows the adoption happened). On failure
	// what it wrote is removed and what was staged before is kept.
	ReceiveDisk(ctx context.Context, spec DomainSpec, layer DiskLayer, disk io.Reader) error
	// AdoptDisk makes the staged layers (the base, with the top merged into
	// it when one was received) the instance's disk, grows it to
	// spec.DiskGiB, and defines the domain shut off at spec's shape. Done
	// already (the domain is defined at spec's shape, shut off, nothing
	// staged): success; any other domain of the id is ErrAlreadyExists.
	// Nothing staged is ErrInvalidState.
	AdoptDisk(ctx context.Context, spec DomainSpec) error

	// Reshape resizes a shut-off domain in place (a resize that stays on
	// its host): the disk as it is becomes the original, kept apart
	// byte for byte, and the domain is redefined at spec's vCPUs and
	// memory over a copy grown to spec.DiskGiB. Done already (an original
	// kept, the domain at spec's shape): success, in any state; an original
	// kept for another shape is ErrInvalidState. Any state but shut off, and
	// a frozen disk, are ErrInvalidState; a disk smaller than the current
	// one is ErrInvalidSpec.
	Reshape(ctx context.Context, spec DomainSpec) error
	// Unshape is Reshape's revert: the shut-off domain gets its original
	// disk back, the resized copy is removed, and it is redefined at spec
	// (the original shape). No original kept: success if the domain is
	// already at spec's shape, else ErrInvalidState. With an original kept,
	// any state but shut off is ErrInvalidState.
	Unshape(ctx context.Context, spec DomainSpec) error
	// UpgradeDisk is Reshape for an upgrade (a new image version and/or
	// model): the disk is kept apart as the original, for Unshape (the
	// rollback) or DropOriginal (the upgrade is final), and the domain is
	// redefined at spec; with another image than the domain's, over a
	// fresh disk of that image instead of a copy of the old one.
	UpgradeDisk(ctx context.Context, spec DomainSpec) error
	// DropOriginal removes the original Reshape kept (a confirmed resize).
	// Nothing kept (or no domain): success. The domain may be in any state.
	DropOriginal(ctx context.Context, id string) error
	// GrowDisk grows the instance's disk to diskGiB in place, while the
	// domain runs (the guest sees the new size at once) or is shut off.
	// A smaller size is ErrInvalidSpec; the same size is success in any
	// state; otherwise running, paused and shut-off domains can grow, others
	// are ErrInvalidState. The next boot sees the new size too.
	GrowDisk(ctx context.Context, id string, diskGiB uint64) error

	// RebuildDisk gives the shut-off domain a fresh disk from spec.Image
	// (a rebuild): the disk as it is becomes the original, kept apart as
	// Reshape keeps it (Unshape puts it back, DropOriginal removes it), and
	// the domain is redefined at spec over the fresh one. Done already (an
	// original kept, the domain over spec's image): success, in any state.
	RebuildDisk(ctx context.Context, spec DomainSpec) error
	// RescueDomain redefines the shut-off domain to boot image (the rescue
	// system, over a fresh disk of its own) with the instance's disk
	// attached as its second disk. Already rescued with image: success.
	RescueDomain(ctx context.Context, spec DomainSpec, image string) error
	// UnrescueDomain redefines the shut-off domain at spec over its own
	// disk again and removes the rescue system's disk. Not rescued: success.
	UnrescueDomain(ctx context.Context, spec DomainSpec) error
	// BundleDisk writes the shut-off domain's disk, flattened and
	// compressed, as the new image named image on this host, whole or not
	// at all. An image of that name that exists is ErrAlreadyExists, but
	// for one this bundle (token: its operation) made already: success.
	BundleDisk(ctx context.Context, id, image, token string) error
	// Release undefines a shut-off domain and keeps its disk (a
	// deallocate): the host holds nothing of it but the disk. No domain:
	// success. Any state but shut off is ErrInvalidState.
	Release(ctx context.Context, id string) error
	// Define defines the domain, shut off, at spec over the disk a Release
	// kept. Done already (defined, shut off): success; no kept disk is
	// ErrNotFound; a domain in any other state is ErrAlreadyExists.
	Define(ctx context.Context, spec DomainSpec) error

	// Images lists the complete images of the image directory.
	Images(ctx context.Context) ([]ImageInfo, error)
	// OpenImage opens image name in its travelling form, one stream (see
	// hypervisor/imagefile), and returns its length. A missing or
	// incomplete image is ErrImageNotFound.
	OpenImage(ctx context.Context, name string) (io.ReadCloser, int64, error)
	// WriteImage writes image name from what another host's OpenImage
	// gave, whole or not at all: it reads r to its end (or error) before
	// the image appears, so a caller that verifies the stream can fail it
	// first. An image of that name already there is success when its
	// checksum is sha256 (or sha256 is ""), else ErrAlreadyExists.
	WriteImage(ctx context.Context, name, sha256 string, r io.Reader) error
	// AdoptImage makes path, a disk file (qcow2 without backing file, or
	// raw) or an image directory inside the image directory, the image
	// name (a copy; path stays). path is relative to the image directory;
	// one that leads out of it (.., a symbolic link) is ErrInvalidSpec.
	// An image of that name already there is ErrAlreadyExists.
	AdoptImage(ctx context.Context, path, name string) error
	// RemoveImage removes image name; none: success.
	RemoveImage(ctx context.Context, name string) error

	// Status reports one domain; a missing domain is PowerNoDomain, not an error.
	Status(ctx context.Context, id string) (DomainStatus, error)
	// List reports every domain Flotilla manages on this host.
	List(ctx context.Context) ([]DomainStatus, error)
	// Events streams power-state changes until ctx ends. The channel is
	// closed when the subscription breaks (e.g. the hypervisor restarted);
	// callers resubscribe and resync with List.
	Events(ctx context.Context) (<-chan Event, error)

	// Networks reports which networks this host can serve: whether it
	// defines nat and isolated networks itself, and which bridges exist.
	Networks(ctx context.Context) (NetworkSupport, error)
	// Resync puts back what the domains it has need of the host's networks
	// (a network, or a NIC's address reservation, that is missing, e.g.
	// after the hypervisor restarted or an operator removed it), from the
	// domains' own definitions. Idempotent.
	Resync(ctx context.Context) error

	// GuestSocket is the host end of the domain's guest channel
	// (org.flotilla.guest.0, docs/guest-channel.md): a unix socket the
	// hypervisor listens on while the domain runs, one connection at a
	// time. "" when this hypervisor has none (or id is not an instance id).
	GuestSocket(id string) string

	Close() error
}
