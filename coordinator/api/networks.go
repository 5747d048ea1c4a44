package api

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type networks struct {
	*core
	pb.UnimplementedNetworkServiceServer
}

func (s *networks) view(n *state.Network) *pb.Network {
	return convert.NetworkToPB(n, s.store.AddressesInUse(n.Name), s.svc.HostsServing(n))
}

func (s *networks) CreateNetwork(ctx context.Context, r *pb.CreateNetworkRequest) (*pb.Network, error) {
	n, v := validateNetwork(r)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	got, err := s.svc.CreateNetwork(ctx, n)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.view(&got), nil
}

func (s *networks) GetNetwork(ctx context.Context, r *pb.GetNetworkRequest) (*pb.Network, error) {
	if err := ipam.ValidateName(r.Name); err != nil {
		return nil, invalid(violations{{"name", err.Error()}})
	}
	n, err := s.store.Network(r.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.view(&n), nil
}

func (s *networks) ListNetworks(ctx context.Context, r *pb.ListNetworksRequest) (*pb.ListNetworksResponse, error) {
	all, rev := s.store.Networks()
	out := &pb.ListNetworksResponse{Revision: rev}
	for i := range all {
		out.Networks = append(out.Networks, s.view(&all[i]))
	}
	return out, nil
}

func (s *networks) DeleteNetwork(ctx context.Context, r *pb.DeleteNetworkRequest) (*pb.DeleteNetworkResponse, error) {
	if err := ipam.ValidateName(r.Name); err != nil {
		return nil, invalid(violations{{"name", err.Error()}})
	}
	if err := s.svc.DeleteNetwork(ctx, r.Name); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteNetworkResponse{}, nil
}

// validateNetwork checks a new network's fields and gives its record.
func validateNetwork(r *pb.CreateNetworkRequest) (state.Network, violations) {
	var v violations
	n := state.Network{Name: r.Name, Bridge: r.Bridge}
	if err := ipam.ValidateName(r.Name); err != nil {
		v.add("name", "%s", unwrapInvalid(err))
	}
	p, err := ipam.ParsePrefix(r.Cidr)
	if err != nil {
		v.add("cidr", "%s", unwrapInvalid(err))
	} else {
		n.CIDR = p.String()
		gw, err := ipam.ParseGateway(p, r.Gateway)
		if err != nil {
			v.add("gateway", "%s", unwrapInvalid(err))
		}
		n.Gateway = gw.String()
	}
	mode, ok := convert.NetworkModeFromPB(r.Mode)
	n.Mode = mode
	switch {
	case !ok:
		v.add("mode", "must be NAT, ISOLATED or BRIDGE")
	case mode == state.NetworkBridge:
		if err := ipam.ValidateBridge(r.Bridge); err != nil {
			v.add("bridge", "%s (required for mode BRIDGE)", unwrapInvalid(err))
		}
	case r.Bridge != "":
		v.add("bridge", "is only for mode BRIDGE")
	}
	return n, v
}

// unwrapInvalid is an ipam error's text without the sentinel's.
func unwrapInvalid(err error) string {
	msg := err.Error()
	if suffix := ": " + ipam.ErrInvalid.Error(); len(msg) > len(suffix) && msg[len(msg)-len(suffix):] == suffix {
		return msg[:len(msg)-len(suffix)]
	}
	return msg
}
