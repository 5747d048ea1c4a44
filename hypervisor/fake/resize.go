package fake

import (
	"context"
	"fmt"
	"io"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// TODO(resize): placeholders while the driver side is built.

func (d *Driver) FreezeDisk(ctx context.Context, id string) error { return errTODO("FreezeDisk") }
func (d *Driver) ThawDisk(ctx context.Context, id string) error   { return errTODO("ThawDisk") }
func (d *Driver) ReceiveDisk(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, disk io.Reader) error {
	return errTODO("ReceiveDisk")
}
func (d *Driver) AdoptDisk(ctx context.Context, spec hypervisor.DomainSpec) error {
	return errTODO("AdoptDisk")
}
func (d *Driver) Reshape(ctx context.Context, spec hypervisor.DomainSpec) error {
	return errTODO("Reshape")
}
func (d *Driver) Unshape(ctx context.Context, spec hypervisor.DomainSpec) error {
	return errTODO("Unshape")
}
func (d *Driver) DropOriginal(ctx context.Context, id string) error { return errTODO("DropOriginal") }
func (d *Driver) GrowDisk(ctx context.Context, id string, diskGiB uint64) error {
	return errTODO("GrowDisk")
}

func errTODO(m string) error {
	return fmt.Errorf("fake: %s: not built yet: %w", m, hypervisor.ErrInvalidState)
}
