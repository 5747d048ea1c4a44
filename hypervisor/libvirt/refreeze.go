package libvirt

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// TODO(resize): placeholder while the second pass is built.
func (d *Driver) RefreezeDisk(ctx context.Context, id string) error {
	return fmt.Errorf("libvirt: RefreezeDisk: not built yet: %w", hypervisor.ErrInvalidState)
}
