// Package fake is an in-memory hypervisor.Driver with the libvirt driver's
// state machine, for unit tests and for simulating many hosts in one process.
// Managed networks and their reservations are kept in memory too (Network,
// RemoveNetwork). Besides the Driver methods it offers fault injection (InjectFault,
// SetDelay, Hold, SetUnavailable, SetDiskFree), guest behaviour (SetShutdownDelay, SetIgnoreACPI,
// PowerOff, Crash, SetGuestSocket) and event loss (DropEvents, BreakEvents). Each domain has
// a disk of bytes derived from its id (Disk), which OpenDisk and ImportDomain
// copy, so a test can check that a moved instance arrived intact. The resize
// methods model the libvirt driver's disk layers in memory: a guest writes
// with WriteDisk, a frozen disk keeps its base (and, refrozen, its mid)
// apart, a received layer is staged until AdoptDisk (a received mid merged
// into the staged base at once), Reshape keeps an original; DiskState,
// Staged and Spec show them, and InjectFaultAfter loses a reply after the work is done.
package fake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("fake driver closed")

// Options configures a fake Driver.
type Options struct {
	Kind     string // Kind(); default "fake"
	Capacity hypervisor.Capacity
	// Images Create accepts; others are ErrImageNotFound. Empty accepts any
	// valid image name.
	Images []string
	// ShutdownDelay is how long a guest takes to power off after the ACPI
	// button; 0 powers off at once. SetShutdownDelay overrides it per guest.
	ShutdownDelay time.Duration
	// EventBuffer is each subscription's channel capacity; default 1024. A
	// subscriber that lets it fill up is cut off (its channel closed), as a
	// broken subscription would be, and must resubscribe and resync.
	EventBuffer int
	// PreserveCrashed makes Crash leave the domain crashed, as libvirt's
	// on_crash=preserve would; by default it is shut off with reason
	// "crashed", as the libvirt driver's on_crash=destroy does.
	PreserveCrashed bool
	// DiskSize is the size in bytes of the disk Create gives an instance;
	// default DefaultDiskSize.
	DiskSize int
	// MaxImportBytes caps the disk ImportDomain accepts, besides the spec's
	// DiskGiB, since the fake keeps disks in memory; default 1 GiB.
	MaxImportBytes int64
	// Faults are delays and failures in place from the start (see FaultsEnv).
	Faults Faults
	// Bridges are the host bridges Networks reports and bridge NICs may
	// use (see BridgesEnv).
	Bridges []string
}

// DefaultDiskFree is the free space Preflight sees until SetDiskFree: a
// petabyte, so that only a test that asks for a short disk gets one.
const DefaultDiskFree = 1 << 50

// diskDir is the directory the fake's faults name: it has no real one.
const diskDir = "/fake/disks"

// DefaultDiskSize spans several of the disk transfer's 256 KiB chunks, plus
// a partial one, so a copy exercises chunking.
const DefaultDiskSize = 640<<10 + 123

// Driver is the in-memory hypervisor. All methods are safe for concurrent use.
type Driver struct {
	opts   Options
	images map[string]bool
	// bundled are the images BundleDisk made (guarded by mu).
	bundled map[string]bool
	// written are the images WriteImage or AdoptImage made, with their
	// content (guarded by mu).
	written map[string][]byte

	mu          sync.Mutex
	domains     map[string]*domain
	guests      map[string]*guest // behaviour per id, kept across Delete
	subs        map[*subscriber]struct{}
	faults      map[string]*fault
	faultsAfter map[string]*fault   // InjectFaultAfter
	staged      map[string]*staged  // ReceiveDisk, per instance id
	released    map[string]*domain  // Release: disks kept without a domain
	networks    map[string]*network // managed networks by name
	delays      map[string]time.Duration
	holds       map[string]chan struct{} // closed on release
	calls       map[string]int
	dropEvents  bool
	unavailable bool
	closed      bool
	diskFree    uint64 // what Preflight sees free in the disk directory
}

var _ hypervisor.Driver = (*Driver)(nil)

// New returns an empty fake hypervisor.
func New(opts Options) *Driver {
	if opts.Kind == "" {
		opts.Kind = "fake"
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 1024
	}
	if opts.DiskSize <= 0 {
		opts.DiskSize = DefaultDiskSize
	}
	if opts.MaxImportBytes <= 0 {
		opts.MaxImportBytes = 1 << 30
	}
	d := &Driver{
		opts:        opts,
		images:      make(map[string]bool),
		bundled:     make(map[string]bool),
		written:     make(map[string][]byte),
		domains:     make(map[string]*domain),
		guests:      make(map[string]*guest),
		subs:        make(map[*subscriber]struct{}),
		faults:      make(map[string]*fault),
		faultsAfter: make(map[string]*fault),
		staged:      make(map[string]*staged),
		released:    make(map[string]*domain),
		networks:    make(map[string]*network),
		delays:      make(map[string]time.Duration),
		holds:       make(map[string]chan struct{}),
		calls:       make(map[string]int),

		diskFree: DefaultDiskFree,
	}
	for _, img := range opts.Images {
		d.images[img] = true
	}
	for m, delay := range opts.Faults.Delays {
		d.SetDelay(m, delay)
	}
	for m, f := range opts.Faults.Fails {
		d.InjectFault(m, f.Err, f.Times)
	}
	return d
}

// Kind returns Options.Kind.
func (d *Driver) Kind() string { return d.opts.Kind }

// Capacity returns Options.Capacity. Like libvirt, the fake does not refuse
// guests beyond it: overcommit is the scheduler's business.
func (d *Driver) Capacity(ctx context.Context) (hypervisor.Capacity, error) {
	if err := d.enter(ctx, "Capacity"); err != nil {
		return hypervisor.Capacity{}, err
	}
	return d.opts.Capacity, nil
}

// Close ends all subscriptions; later calls fail with ErrClosed.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	for _, dom := range d.domains {
		dom.stopTimer()
	}
	d.closeSubsLocked()
	return nil
}

// Status reports one domain; a missing one is PowerNoDomain.
func (d *Driver) Status(ctx context.Context, id string) (hypervisor.DomainStatus, error) {
	if err := d.enter(ctx, "Status"); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom := d.domains[id]; dom != nil {
		return dom.status(), nil
	}
	return hypervisor.DomainStatus{ID: id, State: hypervisor.PowerNoDomain, Reason: "missing", ObservedAt: time.Now()}, nil
}

// List reports every domain, ordered by id.
func (d *Driver) List(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	if err := d.enter(ctx, "List"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]hypervisor.DomainStatus, 0, len(d.domains))
	for _, dom := range d.domains {
		out = append(out, dom.status())
	}
	slices.SortFunc(out, func(a, b hypervisor.DomainStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Title reports a domain's display name ("" and false if there is no such domain).
func (d *Driver) Title(id string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[id]
	if !ok {
		return "", false
	}
	return dom.spec.Name, true
}

// Calls reports how many times method was called (including failed calls).
func (d *Driver) Calls(method string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[method]
}

// enter is the common prologue of every Driver method: it counts the call,
// applies the configured delay and hold (honouring ctx), then any injected
// fault.
func (d *Driver) enter(ctx context.Context, method string) error {
	d.mu.Lock()
	d.calls[method]++
	delay := d.delays[method]
	hold := d.holds[method]
	d.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: %s: %w", method, err)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("fake: %s: %w", method, ctx.Err())
		}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return fmt.Errorf("fake: %s: %w", method, ctx.Err())
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return fmt.Errorf("fake: %s: %w", method, ErrClosed)
	case d.unavailable:
		return fmt.Errorf("fake: %s: %w", method, hypervisor.ErrUnavailable)
	}
	return d.takeFaultLocked(method)
}
