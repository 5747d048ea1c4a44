package state

import (
	"fmt"
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// NetworkMode is how hosts realise a network.
type NetworkMode string

const (
	NetworkNAT      NetworkMode = "nat"      // a libvirt network per host, NATed out
	NetworkIsolated NetworkMode = "isolated" // a libvirt network per host, no route out
	NetworkBridge   NetworkMode = "bridge"   // NICs on a host bridge the operator made
)

// Managed reports whether hosts create the network themselves (rather than
// attach to a bridge that exists).
func (m NetworkMode) Managed() bool { return m == NetworkNAT || m == NetworkIsolated }

// Network is one network's record. Addresses are kept as text (canonical
// forms, checked by the API and again at commit time), so records stay
// plain values.
type Network struct {
	Name       string      `json:"name"`
	CIDR       string      `json:"cidr"`    // canonical IPv4 prefix, e.g. "10.20.0.0/24"
	Gateway    string      `json:"gateway"` // an address inside CIDR
	Mode       NetworkMode `json:"mode"`
	Bridge     string      `json:"bridge,omitempty"` // mode bridge: the host bridge
	CreateTime time.Time   `json:"create_time"`
	CreateRev  int64       `json:"create_rev"`
}

// NIC is one network interface of an instance, as allocated at commit time.
type NIC struct {
	Network  string `json:"network"`
	MAC      string `json:"mac"`
	IPv4     string `json:"ipv4"`
	Hostname string `json:"hostname"` // DNS: Hostname.Network
}

// holdsAddresses reports whether an instance's NICs keep their addresses:
// until the instance is deleted.
func holdsAddresses(i *Instance) bool {
	return len(i.NICs) > 0 && i.Status() != lifecycle.StatusDeleted
}

// addressBook is the index of who holds which address, MAC and host name.
type addressBook struct {
	ignores
	ips   map[string]map[string]string // network -> IPv4 -> instance id
	names map[string]map[string]string // network -> host name -> instance id
	macs  map[string]string            // MAC -> instance id
}

func (x *addressBook) reset(int64) {
	x.ips, x.names, x.macs = map[string]map[string]string{}, map[string]map[string]string{}, map[string]string{}
}

func (x *addressBook) instance(old, now *Instance, _ int64) {
	if old != nil && holdsAddresses(old) {
		for _, n := range old.NICs {
			if x.ips[n.Network][n.IPv4] == old.ID {
				delete(x.ips[n.Network], n.IPv4)
			}
			if x.names[n.Network][n.Hostname] == old.ID {
				delete(x.names[n.Network], n.Hostname)
			}
			if x.macs[n.MAC] == old.ID {
				delete(x.macs, n.MAC)
			}
		}
	}
	if now != nil && holdsAddresses(now) {
		for _, n := range now.NICs {
			if x.ips[n.Network] == nil {
				x.ips[n.Network], x.names[n.Network] = map[string]string{}, map[string]string{}
			}
			x.ips[n.Network][n.IPv4] = now.ID
			x.names[n.Network][n.Hostname] = now.ID
			x.macs[n.MAC] = now.ID
		}
	}
}

// Network returns a network's record.
func (s *Store) Network(name string) (Network, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.networks[name]
	if !ok {
		return Network{}, fmt.Errorf("network %q: %w", name, ErrNotFound)
	}
	return *n, nil
}

// Networks returns every network, ordered by name, and the revision read.
func (s *Store) Networks() ([]Network, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Network, 0, len(s.networks))
	for _, n := range s.networks {
		out = append(out, *n)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, s.rev
}

// AddressesInUse is how many addresses instance records hold on a network.
func (s *Store) AddressesInUse(network string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.addrs.ips[network])
}

// AddressHolder is the instance holding ip on network, if any.
func (s *Store) AddressHolder(network, ip string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.addrs.ips[network][ip]
	return id, ok
}

// Network returns a network's record, staged changes included.
func (tx *Tx) Network(name string) (Network, bool) {
	if n, ok := tx.networks[name]; ok {
		if n == nil {
			return Network{}, false
		}
		return *n, true
	}
	n, ok := tx.s.networks[name]
	if !ok {
		return Network{}, false
	}
	return *n, true
}

// EachNetwork calls fn with every committed network (and those staged).
func (tx *Tx) EachNetwork(fn func(Network)) {
	seen := map[string]bool{}
	for name, n := range tx.networks {
		seen[name] = true
		if n != nil {
			fn(*n)
		}
	}
	for name, n := range tx.s.networks {
		if !seen[name] {
			fn(*n)
		}
	}
}

// PutNetwork stages a network.
func (tx *Tx) PutNetwork(n Network) { tx.networks[n.Name] = &n }

// DeleteNetwork stages a network's removal.
func (tx *Tx) DeleteNetwork(name string) { tx.networks[name] = nil }

// Holders of addresses, MACs and host names, as committed. Only creates
// allocate, one per entry, and they check their own NICs against each
// other, so the committed index is all a create needs to see.

// AddressHolder is the instance holding ip on network.
func (tx *Tx) AddressHolder(network, ip string) (string, bool) {
	id, ok := tx.s.addrs.ips[network][ip]
	return id, ok
}

// AddressesHeld is how many addresses are held on network.
func (tx *Tx) AddressesHeld(network string) int { return len(tx.s.addrs.ips[network]) }

// HostnameHolder is the instance with host name h on network.
func (tx *Tx) HostnameHolder(network, h string) (string, bool) {
	id, ok := tx.s.addrs.names[network][h]
	return id, ok
}

// MACHolder is the instance with the MAC address.
func (tx *Tx) MACHolder(mac string) (string, bool) {
	id, ok := tx.s.addrs.macs[mac]
	return id, ok
}
