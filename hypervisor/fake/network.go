package fake

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// BridgesEnv names the environment variable BridgesFromEnv reads: the
// comma-separated bridges a fake agent says it has (Options.Bridges), e.g.
// FLOTILLA_FAKE_BRIDGES=br0,br1.
const BridgesEnv = "FLOTILLA_FAKE_BRIDGES"

// BridgesFromEnv parses BridgesEnv; unset or empty is none.
func BridgesFromEnv() ([]string, error) {
	var out []string
	for _, b := range strings.Split(os.Getenv(BridgesEnv), ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if err := hypervisor.ValidateBridge(b); err != nil {
			return nil, fmt.Errorf("%s: %w", BridgesEnv, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// ManagedNetwork is a nat or isolated network the fake has defined, as
// the libvirt driver would define it with libvirt.
type ManagedNetwork struct {
	Name         string
	Mode         hypervisor.NetworkMode
	Prefix       netip.Prefix
	Gateway      netip.Addr
	Reservations []Reservation // ordered by instance id
}

// Reservation is one NIC's DHCP and DNS entry on a managed network.
type Reservation struct {
	ID       string // instance id
	MAC      string
	IP       netip.Addr
	Hostname string
}

// network is a managed network's state, guarded by Driver.mu.
type network struct {
	mode    hypervisor.NetworkMode
	prefix  netip.Prefix
	gateway netip.Addr
	hosts   map[string]Reservation // by instance id
}

// Networks: managed networks always; the bridges of Options.Bridges.
func (d *Driver) Networks(ctx context.Context) (hypervisor.NetworkSupport, error) {
	if err := d.enter(ctx, "Networks"); err != nil {
		return hypervisor.NetworkSupport{}, err
	}
	return hypervisor.NetworkSupport{ManagedNetworks: true, Bridges: slices.Clone(d.opts.Bridges)}, nil
}

// Resync puts back every network and reservation the domains' NICs need.
func (d *Driver) Resync(ctx context.Context) error {
	if err := d.enter(ctx, "Resync"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dom := range d.domains {
		if err := d.ensureNetworksLocked(dom.spec); err != nil {
			return fmt.Errorf("fake: resync %s: %w", dom.spec.ID, err)
		}
	}
	return nil
}

// Network reports a managed network by name.
func (d *Driver) Network(name string) (ManagedNetwork, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.networks[name]
	if n == nil {
		return ManagedNetwork{}, false
	}
	out := ManagedNetwork{Name: name, Mode: n.mode, Prefix: n.prefix, Gateway: n.gateway}
	for _, r := range n.hosts {
		out.Reservations = append(out.Reservations, r)
	}
	slices.SortFunc(out.Reservations, func(a, b Reservation) int { return strings.Compare(a.ID, b.ID) })
	return out, true
}

// NetworkNames lists the managed networks, sorted.
func (d *Driver) NetworkNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for name := range d.networks {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// RemoveNetwork drops a managed network behind the driver's back, as an
// operator's virsh net-destroy and net-undefine would; Resync puts it back.
func (d *Driver) RemoveNetwork(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.networks, name)
}

// NICs reports a domain's NICs (nil and false if there is no such domain).
func (d *Driver) NICs(id string) ([]hypervisor.NIC, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return nil, false
	}
	return slices.Clone(dom.spec.NICs), true
}

// checkServed is Preflight's network check, and Create's: a domain cannot
// boot on a bridge the host lacks.
func (d *Driver) checkServed(nics []hypervisor.NIC) error {
	return hypervisor.CheckNICsServed(nics, true, func(b string) bool { return slices.Contains(d.opts.Bridges, b) })
}

// ensureNetworksLocked defines spec's managed networks that are missing and
// adds (or corrects) its reservations. A network of the same name with
// another CIDR, gateway or mode is redefined if nothing else uses it.
func (d *Driver) ensureNetworksLocked(spec hypervisor.DomainSpec) error {
	for _, nic := range spec.NICs {
		if !nic.Mode.Managed() {
			continue
		}
		n := d.networks[nic.Network]
		if n != nil && (n.mode != nic.Mode || n.prefix != nic.Prefix || n.gateway != nic.Gateway) {
			for id := range n.hosts {
				if id != spec.ID {
					return fmt.Errorf("network %s is defined as %s %s (gateway %s) for instance %s: %w",
						nic.Network, n.mode, n.prefix, n.gateway, id, hypervisor.ErrNetworkUnavailable)
				}
			}
			n = nil
		}
		if n == nil {
			n = &network{mode: nic.Mode, prefix: nic.Prefix, gateway: nic.Gateway, hosts: map[string]Reservation{}}
			d.networks[nic.Network] = n
		}
		r := Reservation{ID: spec.ID, MAC: nic.MAC, IP: nic.IP, Hostname: nic.Hostname}
		for id, other := range n.hosts {
			if id != spec.ID && (other.IP == r.IP || other.MAC == r.MAC) {
				return fmt.Errorf("network %s: %s or %s already reserved for instance %s: %w",
					nic.Network, r.MAC, r.IP, id, hypervisor.ErrInvalidSpec)
			}
		}
		n.hosts[spec.ID] = r
	}
	return nil
}

// releaseNetworksLocked drops id's reservations, on every network, and the
// networks no domain uses any more. Networks spec (the domain as it will
// be defined next; nil when deleted) still uses keep its reservation.
func (d *Driver) releaseNetworksLocked(id string, keep []hypervisor.NIC) {
	for name, n := range d.networks {
		if slices.ContainsFunc(keep, func(nic hypervisor.NIC) bool { return nic.Network == name && nic.Mode.Managed() }) {
			continue
		}
		delete(n.hosts, id)
		if len(n.hosts) == 0 {
			delete(d.networks, name)
		}
	}
}

// redefineNetworksLocked moves dom's reservations to those spec's NICs
// need (a resize keeps addresses; this only matters if they changed).
func (d *Driver) redefineNetworksLocked(spec hypervisor.DomainSpec) error {
	if err := d.ensureNetworksLocked(spec); err != nil {
		return err
	}
	d.releaseNetworksLocked(spec.ID, spec.NICs)
	return nil
}
