package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// ErrNotServed refuses an instance on a network no host can serve.
var ErrNotServed = errors.New("no host serves the network")

// CreateNetwork commits a new network (validated again at commit time).
func (s *Service) CreateNetwork(ctx context.Context, n state.Network) (state.Network, error) {
	if _, err := s.apply(ctx, fsm.TypeCreateNetwork, &fsm.CreateNetwork{Network: n}); err != nil {
		return state.Network{}, err
	}
	return s.store.Network(n.Name)
}

// DeleteNetwork removes a network no instance holds an address on.
func (s *Service) DeleteNetwork(ctx context.Context, name string) error {
	_, err := s.apply(ctx, fsm.TypeDeleteNetwork, &fsm.DeleteNetwork{Name: name})
	return err
}

// Serves reports whether host h can serve network n now.
func Serves(h *state.Host, n *state.Network) bool {
	if n.Mode.Managed() {
		return h.ManagedNetworks
	}
	return slices.Contains(h.Bridges, n.Bridge)
}

// HostsServing lists the hosts (by id, in the store's order) that serve n.
func (s *Service) HostsServing(n *state.Network) []string {
	var out []string
	hosts, _ := s.store.Hosts()
	for i := range hosts {
		if Serves(&hosts[i], n) {
			out = append(out, hosts[i].ID)
		}
	}
	return out
}

// checkNICs checks a create's NICs against the state as it is now, so that
// a bad one is refused before anything is placed: the network exists and
// some host serves it, a static address is usable and free. (The commit
// checks and allocates again, against the state as it is then.) It returns
// what the networks need of a host, for the scheduler.
func (s *Service) checkNICs(nics []state.NIC, pl *state.Placement) error {
	pl.ManagedNetworks, pl.Bridges = false, nil
	if len(nics) == 0 {
		return nil
	}
	hosts, _ := s.store.Hosts()
	for k, nic := range nics {
		n, err := s.store.Network(nic.Network)
		if err != nil {
			return fmt.Errorf("interfaces[%d]: %w", k, err)
		}
		if nic.IPv4 != "" {
			p, gw := netip.MustParsePrefix(n.CIDR), netip.MustParseAddr(n.Gateway)
			if _, err := ipam.ParseAddr(p, gw, nic.IPv4); err != nil {
				return &FieldError{Field: fmt.Sprintf("interfaces[%d].ipv4_address", k), Reason: err.Error()}
			}
			if holder, held := s.store.AddressHolder(n.Name, nic.IPv4); held {
				return fmt.Errorf("interfaces[%d]: address %s on network %q is held by instance %s: %w", k, nic.IPv4, n.Name, holder, fsm.ErrConflict)
			}
		}
		served := false
		for i := range hosts {
			served = served || Serves(&hosts[i], &n)
		}
		if !served {
			what := "creates networks (NAT and isolated)"
			if !n.Mode.Managed() {
				what = "has bridge " + n.Bridge
			}
			return fmt.Errorf("interfaces[%d]: network %q: no host %s: %w", k, n.Name, what, ErrNotServed)
		}
		if n.Mode.Managed() {
			pl.ManagedNetworks = true
		} else if !slices.Contains(pl.Bridges, n.Bridge) {
			pl.Bridges = append(pl.Bridges, n.Bridge)
		}
	}
	return nil
}
