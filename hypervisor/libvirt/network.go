package libvirt

import (
	"context"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Networks: none yet.
func (d *Driver) Networks(ctx context.Context) (hypervisor.NetworkSupport, error) {
	return hypervisor.NetworkSupport{}, nil
}

// Resync: nothing to put back yet.
func (d *Driver) Resync(ctx context.Context) error { return nil }
