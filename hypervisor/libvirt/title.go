package libvirt

import (
	"context"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// SetTitle writes the domain's title in its persistent definition and, if a
// guest runs, in the live one too (libvirt keeps the two apart). libvirt
// stores the text itself; no XML is built from it.
func (d *Driver) SetTitle(ctx context.Context, id, title string) error {
	if err := hypervisor.ValidateTitle(title); err != nil {
		return fmt.Errorf("libvirt: set title: %w", err)
	}
	s, err := d.observeValid(ctx, "set title", id)
	if err != nil {
		return err
	}
	if !s.found {
		return errState("set title", id, s)
	}
	flags := golibvirt.DomainAffectConfig
	switch s.state {
	case hypervisor.PowerRunning, hypervisor.PowerPaused, hypervisor.PowerShuttingDown:
		flags |= golibvirt.DomainAffectLive // a QEMU process holds a live definition
	}
	err = d.call(ctx, func(l *golibvirt.Libvirt) error {
		return l.DomainSetMetadata(s.dom, int32(golibvirt.DomainMetadataTitle), golibvirt.OptString{title}, nil, nil, flags)
	})
	if err != nil {
		return wrapErr("set title", id, err)
	}
	d.instanceLog(id).Info("domain title set")
	return nil
}
