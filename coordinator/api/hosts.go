package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type hosts struct {
	*core
	pb.UnimplementedHostServiceServer
}

// counts returns, per host, the instances placed there and those of them
// whose domain is up (what a drain waits for).
func (s *hosts) counts() (placed, up map[string]int32) {
	all, _ := s.store.Instances()
	placed, up = map[string]int32{}, map[string]int32{}
	for _, i := range all {
		if i.HostID == "" || i.Status() == lifecycle.StatusDeleted {
			continue
		}
		placed[i.HostID]++
		switch i.Power {
		case lifecycle.PowerRunning, lifecycle.PowerPaused, lifecycle.PowerShuttingDown:
			up[i.HostID]++
		}
	}
	return placed, up
}

func (s *hosts) view(h *state.Host) *pb.Host {
	placed, up := s.counts()
	return convert.HostToPB(h, s.store.Allocated()[h.ID], placed[h.ID], up[h.ID])
}

// moveTarget picks the host an instance of a draining host moves to: only
// an idle running or stopped instance moves, and only where it fits
// without evicting anything.
func moveTarget(i *state.Instance, targets []scheduler.Host, p scheduler.Policy) (int, bool) {
	if len(targets) == 0 || i.CurrentOp != "" {
		return 0, false
	}
	if st := i.Status(); st != lifecycle.StatusRunning && st != lifecycle.StatusStopped {
		return 0, false
	}
	d, err := scheduler.Place(placement.Request(i.Spec, i.Placement), targets, p)
	if err != nil || len(d.Preempt) > 0 {
		return 0, false
	}
	return slices.IndexFunc(targets, func(h scheduler.Host) bool { return h.ID == d.HostID }), true
}

// newToken returns the secret a move's target presents to pull the disk.
func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

func (s *hosts) ListHosts(ctx context.Context, r *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	all, rev := s.store.Hosts()
	used := s.store.Allocated()
	placed, up := s.counts()
	out := &pb.ListHostsResponse{Revision: rev}
	for i := range all {
		id := all[i].ID
		out.Hosts = append(out.Hosts, convert.HostToPB(&all[i], used[id], placed[id], up[id]))
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
	if _, err := s.apply(ctx, fsm.TypeCordonHost, fsm.CordonHost{HostID: id, Cordon: on}); err != nil {
		return nil, toStatus(err)
	}
	h, err := s.store.Host(id)
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
// finds room on (stopped where none has room). The leader decides the
// targets; the FSM re-checks each at commit time.
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
	if _, err := s.store.Host(r.Id); err != nil {
		return nil, toStatus(err)
	}
	all, _ := s.store.Instances()
	now, by := s.now(), caller.Of(ctx)
	cmd := fsm.DrainHost{HostID: r.Id, Policy: s.policy}
	var targets []scheduler.Host
	if src, _ := s.store.Host(r.Id); r.Policy == pb.DrainPolicy_DRAIN_POLICY_MOVE && src.PeerAddr != "" {
		// Only agents that serve other agents can give or take a disk.
		for _, h := range placement.FromStore(s.store) {
			if dst, err := s.store.Host(h.ID); err == nil && h.ID != r.Id && dst.PeerAddr != "" {
				targets = append(targets, h)
			}
		}
	}
	for _, i := range all {
		if i.HostID != r.Id {
			continue
		}
		op := state.Operation{ID: ids.New("op-"), InstanceID: i.ID, Graceful: graceful, Force: true,
			Deadline: now.Add(s.deadline(lifecycle.OpStop) + graceful), RequestedBy: by}
		if t, ok := moveTarget(&i, targets, s.policy); ok {
			op.TargetHostID, op.Token = targets[t].ID, newToken()
			op.Deadline = now.Add(s.deadline(lifecycle.OpMove) + graceful)
			targets[t] = scheduler.Assign(targets[t], i.ID, placement.Request(i.Spec, i.Placement))
			cmd.Moves = append(cmd.Moves, op)
			continue
		}
		cmd.Stops = append(cmd.Stops, op)
	}
	if _, err := s.apply(ctx, fsm.TypeDrainHost, cmd); err != nil {
		return nil, toStatus(err)
	}
	h, err := s.store.Host(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.view(&h), nil
}
