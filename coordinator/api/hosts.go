package api

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type hosts struct {
	*core
	pb.UnimplementedHostServiceServer
}

func (s *hosts) counts() map[string]int32 {
	all, _ := s.store.Instances()
	n := map[string]int32{}
	for _, i := range all {
		if i.HostID != "" && i.Status() != lifecycle.StatusDeleted {
			n[i.HostID]++
		}
	}
	return n
}

func (s *hosts) ListHosts(ctx context.Context, r *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	all, rev := s.store.Hosts()
	used, n := s.store.Allocated(), s.counts()
	out := &pb.ListHostsResponse{Revision: rev}
	for i := range all {
		out.Hosts = append(out.Hosts, hostToPB(&all[i], used[all[i].ID], n[all[i].ID]))
	}
	return out, nil
}

func (s *hosts) GetHost(ctx context.Context, r *pb.GetHostRequest) (*pb.Host, error) {
	var v violations
	if r.Id == "" {
		v.add("id", "is required")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	h, err := s.store.Host(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	var used state.Resources = s.store.Allocated()[h.ID]
	return hostToPB(&h, used, s.counts()[h.ID]), nil
}
