package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Cordon closes a host to new instances (on) or opens it again, and
// returns it as committed.
func (s *Service) Cordon(ctx context.Context, hostID string, on bool) (state.Host, error) {
	if _, err := s.apply(ctx, fsm.TypeCordonHost, fsm.CordonHost{HostID: hostID, Cordon: on}); err != nil {
		return state.Host{}, err
	}
	return s.store.Host(hostID)
}

// Drain cordons the host and empties it: every instance on it is stopped
// there, or, with move, moved to another host the scheduler finds room on
// (stopped where none has room). Each guest gets graceful to power off.
// The leader decides the targets; the FSM re-checks each at commit time.
func (s *Service) Drain(ctx context.Context, hostID string, move bool, graceful time.Duration) (state.Host, error) {
	src, err := s.store.Host(hostID)
	if err != nil {
		return state.Host{}, err
	}
	all, _ := s.store.Instances()
	now, by := s.now(), caller.Of(ctx)
	cmd := fsm.DrainHost{HostID: hostID, Policy: s.policy}
	var targets []scheduler.Host
	if move && src.PeerAddr != "" {
		// Only agents that serve other agents can give or take a disk.
		for _, h := range placement.FromStore(s.store) {
			if dst, err := s.store.Host(h.ID); err == nil && h.ID != hostID && dst.PeerAddr != "" {
				targets = append(targets, h)
			}
		}
	}
	for _, i := range all {
		if i.HostID != hostID {
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
		return state.Host{}, err
	}
	return s.store.Host(hostID)
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

// RemoveHost forgets a host whose agent is not connected and on which
// nothing is placed; the FSM checks both at commit time.
func (s *Service) RemoveHost(ctx context.Context, hostID string) error {
	if v := s.store.LogVersion(); v < fsm.LogVersion6 {
		return fmt.Errorf("removing a host: %w (needs log version %d, the cluster is at %d)", fsm.ErrUnsupported, fsm.LogVersion6, v)
	}
	if _, err := s.store.Host(hostID); err != nil {
		return err
	}
	_, err := s.apply(ctx, fsm.TypeRemoveHost, fsm.RemoveHost{HostID: hostID})
	return err
}
