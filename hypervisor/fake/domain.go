package fake

import (
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// domain is one simulated VM. All fields are guarded by Driver.mu.
type domain struct {
	spec    hypervisor.DomainSpec
	state   hypervisor.PowerState
	reason  string
	gen     uint64        // bumped on every transition; stale timers compare it
	changed chan struct{} // closed on every transition, to wake waiters
	timer   *time.Timer   // pending guest power-off after ACPI
	// disk is the instance's disk once imported; nil means the content
	// Create gives every instance (see diskContent), made only when read so
	// that simulating thousands of instances costs no memory for disks.
	disk []byte
	// size is the disk's virtual size in bytes; 0 means len(disk). Bytes
	// past len(disk) read as zeros (a grown disk).
	size int64
	// base is the frozen disk's immutable part (FreezeDisk), nil when the
	// disk is not frozen; disk is then what the guest sees (base plus its
	// writes since, the top).
	base []byte
	// mid is, on a disk frozen twice (RefreezeDisk), the disk as the guest
	// saw it at the second freeze: base plus the mid layer, immutable. nil
	// when the disk is not refrozen; the top is then what disk adds to it.
	mid []byte
	// original is what Reshape kept, nil when nothing is kept.
	original *original
	// rescue is the image its rescue system boots; "" when not rescued.
	rescue string
}

// original is a disk and shape kept by Reshape for Unshape.
type original struct {
	disk []byte
	size int64
	spec hypervisor.DomainSpec
}

func newDomain(spec hypervisor.DomainSpec) *domain {
	return &domain{spec: spec, changed: make(chan struct{})}
}

func (dom *domain) status() hypervisor.DomainStatus {
	return hypervisor.DomainStatus{ID: dom.spec.ID, State: dom.state, Reason: dom.reason, ObservedAt: time.Now()}
}

func (dom *domain) stopTimer() {
	if dom.timer != nil {
		dom.timer.Stop()
		dom.timer = nil
	}
}

// setLocked moves dom to a new state and publishes the change.
func (d *Driver) setLocked(dom *domain, state hypervisor.PowerState, reason string) {
	dom.stopTimer()
	dom.state, dom.reason = state, reason
	dom.gen++
	close(dom.changed)
	dom.changed = make(chan struct{})
	d.emitLocked(dom.status())
}

// pressACPILocked is the guest's reaction to the power button: power off now,
// after its shutdown delay, or never when it ignores ACPI.
func (d *Driver) pressACPILocked(dom *domain) {
	if dom.state != hypervisor.PowerRunning {
		return
	}
	delay, reacts := d.shutdownDelayLocked(dom.spec.ID)
	switch {
	case !reacts:
	case delay <= 0:
		d.setLocked(dom, hypervisor.PowerShutOff, "shutdown")
	default:
		d.setLocked(dom, hypervisor.PowerShuttingDown, "user")
		gen := dom.gen
		dom.timer = time.AfterFunc(delay, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.closed || d.domains[dom.spec.ID] != dom || dom.gen != gen {
				return // something else happened to the domain meanwhile
			}
			d.setLocked(dom, hypervisor.PowerShutOff, "shutdown")
		})
	}
}

// lookupLocked returns the domain or an error wrapping ErrNotFound.
func (d *Driver) lookupLocked(op, id string) (*domain, error) {
	if err := hypervisor.ValidateID(id); err != nil {
		return nil, fmt.Errorf("fake: %s: %w", op, err)
	}
	dom := d.domains[id]
	if dom == nil {
		return nil, fmt.Errorf("fake: %s %s: %w", op, id, hypervisor.ErrNotFound)
	}
	return dom, nil
}

func errState(op string, dom *domain) error {
	return fmt.Errorf("fake: %s %s: domain is %s (%s): %w", op, dom.spec.ID, dom.state, dom.reason, hypervisor.ErrInvalidState)
}

func isOff(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerShutOff || s == hypervisor.PowerSavedToDisk
}

// isActive reports states in which a guest exists in memory.
func isActive(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerRunning || s == hypervisor.PowerPaused || s == hypervisor.PowerShuttingDown
}

// PowerOff simulates the guest powering itself off (e.g. `poweroff` inside).
func (d *Driver) PowerOff(id string) error {
	return d.guestEvent("power off", id, hypervisor.PowerShutOff, "shutdown")
}

// Crash simulates a guest crash: shut off with reason "crashed", or crashed
// with Options.PreserveCrashed.
func (d *Driver) Crash(id string) error {
	if d.opts.PreserveCrashed {
		return d.guestEvent("crash", id, hypervisor.PowerCrashed, "panicked")
	}
	return d.guestEvent("crash", id, hypervisor.PowerShutOff, "crashed")
}

func (d *Driver) guestEvent(op, id string, state hypervisor.PowerState, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	dom, err := d.lookupLocked(op, id)
	if err != nil {
		return err
	}
	// Only a guest whose vCPUs run can do anything by itself.
	if dom.state != hypervisor.PowerRunning && dom.state != hypervisor.PowerShuttingDown {
		return errState(op, dom)
	}
	d.setLocked(dom, state, reason)
	return nil
}
