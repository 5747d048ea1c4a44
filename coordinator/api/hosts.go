package api

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type hosts struct {
	*core
	pb.UnimplementedHostServiceServer
}

// counts returns, per host, the instances placed there, those of them
// whose domain is up (what a drain waits for), and the room soft-deleted
// ones hold. A deallocated instance keeps only its disk there: not placed.
func (s *hosts) counts() (placed, up map[string]int32, soft map[string]state.Resources) {
	all, _ := s.store.Instances()
	placed, up, soft = map[string]int32{}, map[string]int32{}, map[string]state.Resources{}
	for _, i := range all {
		st := i.Status()
		if i.HostID == "" || st == lifecycle.StatusDeleted || st == lifecycle.StatusDeallocated {
			continue
		}
		if st == lifecycle.StatusSoftDeleted {
			r := soft[i.HostID]
			r.VCPUs, r.MemoryMiB, r.DiskGiB = r.VCPUs+i.Spec.VCPUs, r.MemoryMiB+i.Spec.MemoryMiB, r.DiskGiB+i.Spec.DiskGiB
			soft[i.HostID] = r
		}
		placed[i.HostID]++
		switch i.Power {
		case lifecycle.PowerRunning, lifecycle.PowerPaused, lifecycle.PowerShuttingDown:
			up[i.HostID]++
		}
	}
	return placed, up, soft
}

func (s *hosts) view(h *state.Host) *pb.Host {
	placed, up, soft := s.counts()
	return convert.HostToPB(h, s.store.Allocated()[h.ID], soft[h.ID], placed[h.ID], up[h.ID])
}

func (s *hosts) ListHosts(ctx context.Context, r *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	all, rev := s.store.Hosts()
	used := s.store.Allocated()
	placed, up, soft := s.counts()
	out := &pb.ListHostsResponse{Revision: rev}
	for i := range all {
		id := all[i].ID
		out.Hosts = append(out.Hosts, convert.HostToPB(&all[i], used[id], soft[id], placed[id], up[id]))
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
	return s.view(&h), nil
}

func (s *hosts) cordon(ctx context.Context, id string, on bool) (*pb.Host, error) {
	if id == "" {
		return nil, invalid(violations{{"id", "is required"}})
	}
	h, err := s.svc.Cordon(ctx, id, on)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.view(&h), nil
}

func (s *hosts) CordonHost(ctx context.Context, r *pb.CordonHostRequest) (*pb.Host, error) {
	return s.cordon(ctx, r.Id, true)
}

func (s *hosts) UncordonHost(ctx context.Context, r *pb.UncordonHostRequest) (*pb.Host, error) {
	return s.cordon(ctx, r.Id, false)
}

// DrainHost cordons the host and empties it: per the policy, every
// instance on it is stopped there, or moved to another host the scheduler
// finds room on (stopped where none has room).
func (s *hosts) DrainHost(ctx context.Context, r *pb.DrainHostRequest) (*pb.Host, error) {
	var v violations
	if r.Id == "" {
		v.add("id", "is required")
	}
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	if _, ok := pb.DrainPolicy_name[int32(r.Policy)]; !ok {
		v.add("policy", "is not a known drain policy")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	h, err := s.svc.Drain(ctx, r.Id, r.Policy == pb.DrainPolicy_DRAIN_POLICY_MOVE, graceful)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.view(&h), nil
}

// RemoveHost forgets a host whose agent is gone and on which nothing is
// placed (FAILED_PRECONDITION otherwise, saying what is in the way).
func (s *hosts) RemoveHost(ctx context.Context, r *pb.RemoveHostRequest) (*pb.RemoveHostResponse, error) {
	if r.Id == "" {
		return nil, invalid(violations{{"id", "is required"}})
	}
	if err := s.svc.RemoveHost(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	return &pb.RemoveHostResponse{}, nil
}
