package fake

import "github.com/flotilla-vm/flotilla/hypervisor"

// DiskInfo is what a test can see of an instance's disk (see DiskState).
type DiskInfo struct {
	Size         int64 // virtual size in bytes
	Frozen       bool  // FreezeDisk made a base; writes go to the top
	Refrozen     bool  // RefreezeDisk made a mid between base and top
	OriginalKept bool  // Reshape kept the disk before it
}

// DiskState reports the instance's disk, and false when there is no such
// domain. Disk gives its content.
func (d *Driver) DiskState(id string) (DiskInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return DiskInfo{}, false
	}
	return DiskInfo{Size: d.sizeLocked(dom), Frozen: dom.base != nil, Refrozen: dom.mid != nil, OriginalKept: dom.original != nil}, true
}

// Spec reports the spec the domain is defined with (its shape after a
// resize or grow), and false when there is no such domain.
func (d *Driver) Spec(id string) (hypervisor.DomainSpec, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return hypervisor.DomainSpec{}, false
	}
	return dom.spec, true
}
