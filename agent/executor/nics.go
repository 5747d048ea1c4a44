package executor

import (
	"fmt"
	"net/netip"

	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// nicsFromPB converts a step's NICs; anything unparsable is ErrInvalidSpec
// (the driver's ValidateSpec checks the rest).
func nicsFromPB(in []*agentv1.Nic) ([]hypervisor.NIC, error) {
	if len(in) > hypervisor.MaxNICs {
		return nil, fmt.Errorf("%d NICs, at most %d: %w", len(in), hypervisor.MaxNICs, hypervisor.ErrInvalidSpec)
	}
	var out []hypervisor.NIC
	for i, n := range in {
		mode, err := modeFromPB(n.GetMode())
		if err != nil {
			return nil, fmt.Errorf("nic %d: %w", i, err)
		}
		prefix, err := netip.ParsePrefix(n.GetCidr())
		if err != nil {
			return nil, fmt.Errorf("nic %d: cidr %q: %w", i, n.GetCidr(), hypervisor.ErrInvalidSpec)
		}
		gw, err := netip.ParseAddr(n.GetGateway())
		if err != nil {
			return nil, fmt.Errorf("nic %d: gateway %q: %w", i, n.GetGateway(), hypervisor.ErrInvalidSpec)
		}
		ip, err := netip.ParseAddr(n.GetIpv4Address())
		if err != nil {
			return nil, fmt.Errorf("nic %d: address %q: %w", i, n.GetIpv4Address(), hypervisor.ErrInvalidSpec)
		}
		out = append(out, hypervisor.NIC{
			Network:  n.GetNetwork(),
			Mode:     mode,
			Bridge:   n.GetBridge(),
			Prefix:   prefix,
			Gateway:  gw,
			IP:       ip,
			MAC:      n.GetMacAddress(),
			Hostname: n.GetHostname(),
		})
	}
	return out, nil
}

func modeFromPB(m flotillav1.NetworkMode) (hypervisor.NetworkMode, error) {
	switch m {
	case flotillav1.NetworkMode_NETWORK_MODE_NAT:
		return hypervisor.ModeNAT, nil
	case flotillav1.NetworkMode_NETWORK_MODE_ISOLATED:
		return hypervisor.ModeIsolated, nil
	case flotillav1.NetworkMode_NETWORK_MODE_BRIDGE:
		return hypervisor.ModeBridge, nil
	}
	return "", fmt.Errorf("network mode %s: %w", m, hypervisor.ErrInvalidSpec)
}

// seedFromPB converts a step's guest configuration; none is nil.
func seedFromPB(g *agentv1.GuestConfig) *hypervisor.GuestSeed {
	if g == nil {
		return nil
	}
	return &hypervisor.GuestSeed{
		Hostname:          g.GetHostname(),
		UserData:          g.GetUserData(),
		SSHAuthorizedKeys: g.GetSshAuthorizedKeys(),
	}
}
