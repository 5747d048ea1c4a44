package libvirt

import (
	"context"
	"fmt"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Status reports one domain; a missing one is PowerNoDomain, not an error.
func (d *Driver) Status(ctx context.Context, id string) (hypervisor.DomainStatus, error) {
	s, err := d.observeValid(ctx, "status", id)
	if err != nil {
		return hypervisor.DomainStatus{}, err
	}
	return hypervisor.DomainStatus{ID: id, State: s.state, Reason: s.reason, ObservedAt: time.Now()}, nil
}

// List reports every Flotilla domain (name prefix "flotilla-") on the host,
// running or not. Other domains are none of Flotilla's business.
func (d *Driver) List(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	var out []hypervisor.DomainStatus
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, dom := range doms {
			id, ok := idFromDomainName(dom.Name)
			if !ok {
				continue
			}
			s, err := observeDomain(l, dom)
			if isNoDomain(err) {
				continue // undefined since the listing
			}
			if err != nil {
				return fmt.Errorf("state of %s: %w", dom.Name, err)
			}
			out = append(out, hypervisor.DomainStatus{ID: id, State: s.state, Reason: s.reason, ObservedAt: time.Now()})
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr("list", "", err)
	}
	return out, nil
}
