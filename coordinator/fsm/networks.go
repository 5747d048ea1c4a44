package fsm

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Command types of networks (log version 3).
const (
	TypeCreateNetwork = "network.create"
	TypeDeleteNetwork = "network.delete"
)

// Errors of networks and addresses.
var (
	// ErrConflict: the request collides with what another record holds (an
	// overlapping prefix, a bridge another network has, an address held).
	ErrConflict = errors.New("conflicts with an existing record")
	// ErrInUse: a network some instance still holds an address on.
	ErrInUse = errors.New("in use")
	// ErrNoAddress: every address of a network is held.
	ErrNoAddress = errors.New("no free address")
)

// CreateNetwork defines a network.
type CreateNetwork struct {
	Network state.Network `json:"network"`
}

// DeleteNetwork removes a network no instance holds an address on.
type DeleteNetwork struct {
	Name string `json:"name"`
}

func applyCreateNetwork(tx *state.Tx, c *CreateNetwork) (any, error) {
	n := c.Network
	if err := validNetwork(&n); err != nil {
		return nil, err
	}
	if _, ok := tx.Network(n.Name); ok {
		return nil, fmt.Errorf("network %q: %w", n.Name, ErrAlreadyExists)
	}
	p := netip.MustParsePrefix(n.CIDR)
	var clash error
	tx.EachNetwork(func(o state.Network) {
		switch {
		case clash != nil:
		case ipam.Overlap(p, netip.MustParsePrefix(o.CIDR)):
			clash = fmt.Errorf("network %q: %s overlaps network %q's %s: %w", n.Name, n.CIDR, o.Name, o.CIDR, ErrConflict)
		case n.Mode == state.NetworkBridge && o.Mode == state.NetworkBridge && n.Bridge == o.Bridge:
			clash = fmt.Errorf("network %q: bridge %s already carries network %q: %w", n.Name, n.Bridge, o.Name, ErrConflict)
		}
	})
	if clash != nil {
		return nil, clash
	}
	n.CreateRev, n.CreateTime = 0, tx.Now() // set at commit
	tx.PutNetwork(n)
	return n.Name, nil
}

// validNetwork checks a network record and puts its addresses in canonical
// form. The API checked the same; replicas check again rather than trust
// the entry.
func validNetwork(n *state.Network) error {
	if err := ipam.ValidateName(n.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p, err := ipam.ParsePrefix(n.CIDR)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	gw, err := ipam.ParseGateway(p, n.Gateway)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	n.CIDR, n.Gateway = p.String(), gw.String()
	switch n.Mode {
	case state.NetworkNAT, state.NetworkIsolated:
		if n.Bridge != "" {
			return fmt.Errorf("network %q: a bridge is named only for mode bridge: %w", n.Name, ErrInvalid)
		}
	case state.NetworkBridge:
		if err := ipam.ValidateBridge(n.Bridge); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	default:
		return fmt.Errorf("network %q: unknown mode %q: %w", n.Name, n.Mode, ErrInvalid)
	}
	return nil
}

func applyDeleteNetwork(tx *state.Tx, c *DeleteNetwork) (any, error) {
	if _, ok := tx.Network(c.Name); !ok {
		return nil, fmt.Errorf("network %q: %w", c.Name, ErrNotFound)
	}
	if n := tx.AddressesHeld(c.Name); n > 0 {
		return nil, fmt.Errorf("network %q: %d instance addresses are held on it (delete those instances first): %w", c.Name, n, ErrInUse)
	}
	tx.DeleteNetwork(c.Name)
	return c.Name, nil
}

// macAttempts bounds the search for a MAC no instance has: with 2^24
// candidates a collision is rare, and many in a row mean a full space.
const macAttempts = 64

// allocateNICs gives inst's NICs (each naming a network, with the address
// asked for or none) their addresses, MACs and host names, and sets what
// their networks need of a host in its placement. It runs at commit time,
// so two creates can never be given one address.
func allocateNICs(tx *state.Tx, inst *state.Instance) error {
	inst.Placement.ManagedNetworks, inst.Placement.Bridges = false, nil
	if len(inst.NICs) == 0 {
		return nil
	}
	ips := map[string]map[netip.Addr]bool{} // this instance's, per network
	macs := map[string]bool{}
	for k := range inst.NICs {
		nic := &inst.NICs[k]
		nw, ok := tx.Network(nic.Network)
		if !ok {
			return fmt.Errorf("network %q: %w", nic.Network, ErrNotFound)
		}
		p, gw := netip.MustParsePrefix(nw.CIDR), netip.MustParseAddr(nw.Gateway)
		mine := ips[nw.Name]
		if mine == nil {
			mine = map[netip.Addr]bool{}
			ips[nw.Name] = mine
		}
		taken := func(a netip.Addr) bool {
			_, held := tx.AddressHolder(nw.Name, a.String())
			return held || mine[a]
		}
		var ip netip.Addr
		if nic.IPv4 != "" {
			var err error
			if ip, err = ipam.ParseAddr(p, gw, nic.IPv4); err != nil {
				return fmt.Errorf("%w: network %q: %w", ErrInvalid, nw.Name, err)
			}
			if holder, held := tx.AddressHolder(nw.Name, ip.String()); held || mine[ip] {
				if !held {
					holder = inst.ID
				}
				return fmt.Errorf("address %s on network %q is held by instance %s: %w", ip, nw.Name, holder, ErrConflict)
			}
		} else {
			var ok bool
			if ip, ok = ipam.Next(p, gw, taken); !ok {
				return fmt.Errorf("network %q (%s): all %d addresses are held: %w", nw.Name, nw.CIDR, ipam.Total(p), ErrNoAddress)
			}
		}
		mine[ip] = true
		nic.IPv4 = ip.String()
		nic.MAC = ""
		for a := 0; a < macAttempts && nic.MAC == ""; a++ {
			m := ipam.MAC(inst.ID, k, a)
			if _, held := tx.MACHolder(m); !held && !macs[m] {
				nic.MAC = m
			}
		}
		if nic.MAC == "" {
			return fmt.Errorf("no free MAC address for instance %s: %w", inst.ID, ErrNoAddress)
		}
		macs[nic.MAC] = true
		// NAME.NETWORK while no other instance on the network has that
		// name; the id (unique) otherwise, or for a second NIC on one network.
		nic.Hostname = inst.Name
		if _, held := tx.HostnameHolder(nw.Name, inst.Name); held || inst.Name == "" || countOn(inst.NICs[:k], nw.Name) > 0 {
			nic.Hostname = inst.ID
		}
		if nw.Mode.Managed() {
			inst.Placement.ManagedNetworks = true
		} else if !slices.Contains(inst.Placement.Bridges, nw.Bridge) {
			inst.Placement.Bridges = append(inst.Placement.Bridges, nw.Bridge)
		}
	}
	return nil
}

func countOn(nics []state.NIC, network string) int {
	n := 0
	for _, x := range nics {
		if x.Network == network {
			n++
		}
	}
	return n
}
