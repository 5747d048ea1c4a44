package fake

import (
	"fmt"
	"sync"
	"time"
)

// methods are the Driver methods faults and delays can target.
var methods = map[string]bool{
	"Capacity": true, "Create": true, "Start": true, "Shutdown": true, "Destroy": true,
	"Reboot": true, "Pause": true, "Resume": true, "Save": true, "Delete": true,
	"Status": true, "List": true, "Events": true, "OpenDisk": true, "ImportDomain": true,
	"Preflight": true, "SetTitle": true, "Networks": true, "Resync": true,
	"FreezeDisk": true, "RefreezeDisk": true, "ThawDisk": true, "ReceiveDisk": true, "AdoptDisk": true,
	"Reshape": true, "Unshape": true, "DropOriginal": true, "GrowDisk": true,
	"Images": true, "OpenImage": true, "WriteImage": true, "AdoptImage": true, "RemoveImage": true,
	"RebuildDisk": true, "RescueDomain": true, "UnrescueDomain": true, "BundleDisk": true,
}

// afterMethods are the methods InjectFaultAfter can target: those whose
// retry after a lost reply the resize plans depend on.
var afterMethods = map[string]bool{
	"FreezeDisk": true, "RefreezeDisk": true, "ThawDisk": true, "ReceiveDisk": true, "AdoptDisk": true,
	"Reshape": true, "Unshape": true, "DropOriginal": true, "GrowDisk": true, "WriteImage": true,
}

func mustMethod(method string) {
	if !methods[method] {
		// A typo here would silently disable the fault a test relies on.
		panic(fmt.Sprintf("fake: no Driver method %q", method))
	}
}

type fault struct {
	err   error
	times int // calls left; negative is every call
}

// InjectFault makes the next times calls of method return err (wrap a
// hypervisor sentinel to simulate a classified failure) without changing any
// state. times < 0 fails every call until InjectFault(method, nil, 0) clears it.
func (d *Driver) InjectFault(method string, err error, times int) {
	mustMethod(method)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil || times == 0 {
		delete(d.faults, method)
		return
	}
	d.faults[method] = &fault{err: err, times: times}
}

// InjectFaultAfter makes the next times calls of method do their work and
// then return err, as when the reply of a call that succeeded is lost (the
// agent restarted, the connection broke): the caller retries something
// already done. Only the resize methods (FreezeDisk, RefreezeDisk, ThawDisk, ReceiveDisk,
// AdoptDisk, Reshape, Unshape, DropOriginal, GrowDisk) take it; a call that
// fails by itself returns its own error and leaves the fault pending.
// times < 0 and clearing work as in InjectFault.
func (d *Driver) InjectFaultAfter(method string, err error, times int) {
	if !afterMethods[method] {
		panic(fmt.Sprintf("fake: InjectFaultAfter: method %q does not take faults after its work", method))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil || times == 0 {
		delete(d.faultsAfter, method)
		return
	}
	d.faultsAfter[method] = &fault{err: err, times: times}
}

// leave is the common epilogue of the methods InjectFaultAfter targets.
func (d *Driver) leave(method string, err error) error {
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return takeFault(d.faultsAfter, method)
}

func (d *Driver) takeFaultLocked(method string) error {
	return takeFault(d.faults, method)
}

func takeFault(faults map[string]*fault, method string) error {
	f := faults[method]
	if f == nil {
		return nil
	}
	if f.times > 0 {
		f.times--
		if f.times == 0 {
			delete(faults, method)
		}
	}
	return f.err
}

// SetDelay makes every call of method take d first (0 removes the delay).
// A call whose context ends during the delay fails with the context's error.
func (d *Driver) SetDelay(method string, delay time.Duration) {
	mustMethod(method)
	d.mu.Lock()
	defer d.mu.Unlock()
	if delay <= 0 {
		delete(d.delays, method)
		return
	}
	d.delays[method] = delay
}

// Hold makes calls of method wait, once counted (see Calls), until release
// is called or their context ends; calls made after release do not wait.
// Unlike SetDelay it lets a test decide when a call ends, so "the step is
// still running" holds for as long as the test needs, however slow the
// machine.
func (d *Driver) Hold(method string) (release func()) {
	mustMethod(method)
	gate := make(chan struct{})
	d.mu.Lock()
	d.holds[method] = gate
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			if d.holds[method] == gate {
				delete(d.holds, method)
			}
			d.mu.Unlock()
			close(gate)
		})
	}
}

// SetUnavailable simulates losing the hypervisor (true): every method fails
// with an error wrapping hypervisor.ErrUnavailable and every event
// subscription closes, as when libvirtd restarts. Domains keep running.
func (d *Driver) SetUnavailable(unavailable bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unavailable = unavailable
	if unavailable {
		d.closeSubsLocked()
	}
}

// DropEvents makes the driver silently lose (true) or deliver (false) events.
func (d *Driver) DropEvents(drop bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropEvents = drop
}

// BreakEvents closes every event subscription, as a dropped connection would.
func (d *Driver) BreakEvents() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeSubsLocked()
}

// guest is the simulated behaviour of the OS inside one instance.
type guest struct {
	ignoreACPI    bool
	shutdownDelay *time.Duration // nil: Options.ShutdownDelay
	socket        string         // GuestSocket; "" has no guest channel
}

func (d *Driver) guestLocked(id string) *guest {
	g := d.guests[id]
	if g == nil {
		g = &guest{}
		d.guests[id] = g
	}
	return g
}

// SetIgnoreACPI makes the guest of id ignore the ACPI power button, so a
// Shutdown without force times out. It applies to the id whether or not the
// domain exists yet.
func (d *Driver) SetIgnoreACPI(id string, ignore bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.guestLocked(id).ignoreACPI = ignore
}

// SetShutdownDelay sets how long the guest of id takes to power off after the
// ACPI button, overriding Options.ShutdownDelay.
func (d *Driver) SetShutdownDelay(id string, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.guestLocked(id).shutdownDelay = &delay
}

func (d *Driver) shutdownDelayLocked(id string) (time.Duration, bool) {
	g := d.guests[id]
	if g != nil && g.ignoreACPI {
		return 0, false
	}
	if g != nil && g.shutdownDelay != nil {
		return *g.shutdownDelay, true
	}
	return d.opts.ShutdownDelay, true
}

// SetGuestSocket gives the guest of id a guest channel: GuestSocket
// returns path, where a test serves the guest's side (a unix socket it
// listens on, as QEMU would). "" takes it away again.
func (d *Driver) SetGuestSocket(id, path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.guestLocked(id).socket = path
}

// GuestSocket returns what SetGuestSocket set for id: by default the fake's
// guests have no guest channel.
func (d *Driver) GuestSocket(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g := d.guests[id]; g != nil {
		return g.socket
	}
	return ""
}

// SetDiskFree sets the free space Preflight sees in the disk directory
// (default DefaultDiskFree), to simulate a host short of disk.
func (d *Driver) SetDiskFree(bytes uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.diskFree = bytes
}
