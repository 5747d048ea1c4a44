package agentlink

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// notLeader refuses a session on a follower. It always carries NOT_LEADER,
// so the agent knows a live member answered (an election may be under way:
// worth asking again soon, not backing off as from an outage), and names
// the leader when this server knows it, so the agent can go there directly.
func (s *Server) notLeader() error {
	msg, meta := "not the leader", map[string]string{}
	if s.cfg.LeaderAPIAddr != nil {
		if addr, ok := s.cfg.LeaderAPIAddr(); ok {
			msg, meta["leader_api_address"] = "not the leader; the leader is at "+addr, addr
		}
	}
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Reason: "NOT_LEADER", Domain: "flotilla.dev", Metadata: meta})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// Watch runs on the leader: heartbeats live only in its memory, and only a
// host's change of status goes through Raft. A session silent for three
// heartbeat intervals is ended (which records the disconnection). A host
// the state shows READY without any session here is declared disconnected
// only after a grace period from the start of this leadership, so agents of
// the previous leader have time to reconnect before anything is judged.
func (s *Server) Watch(ctx context.Context) {
	hb := s.cfg.HeartbeatInterval
	grace := 3*hb + 5*time.Second
	started := s.cfg.Now()
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		s.reapSilent(now, 3*hb)
		s.reapStuck(now, 3*hb)
		if now.Sub(started) >= grace {
			s.disconnectAbsent(ctx)
		}
	}
}

func (s *Server) reapSilent(now time.Time, limit time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.sessions {
		// A session whose report is being committed is waiting on the log,
		// not silent: a slow log must not turn into hosts marked down.
		if !ss.busy && now.Sub(ss.lastSeen) > limit {
			s.log.Warn("agent missed its heartbeats; ending its session", "host", id, "epoch", ss.epoch, "silent", now.Sub(ss.lastSeen))
			delete(s.sessions, id)
			close(ss.done)
			s.notifyLocked()
			// Connect's own exit records the disconnection, once.
			ss.reaped = true
		}
	}
}

// reapStuck ends every session whose stream has not taken a message for
// longer than limit: its agent does not read (while it may still send
// heartbeats), so what is queued for it would never arrive. Ending the
// session makes the agent reconnect, and the orchestrator then asks it
// about every step it was sent and re-sends what it never got.
func (s *Server) reapStuck(now time.Time, limit time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.sessions {
		if ss.sendingSince.IsZero() || now.Sub(ss.sendingSince) <= limit {
			continue
		}
		s.log.Warn("agent does not read its stream; ending its session", "host", id, "epoch", ss.epoch,
			"blocked", now.Sub(ss.sendingSince), "queued", len(ss.out))
		delete(s.sessions, id)
		close(ss.done)
		s.notifyLocked()
		// Connect's own exit records the disconnection, once; the agent
		// still speaks, so the host is not marked down.
		ss.stuck = true
	}
}

func (s *Server) disconnectAbsent(ctx context.Context) {
	if s.cfg.Store == nil {
		return
	}
	hosts, _ := s.cfg.Store.Hosts()
	for _, h := range hosts {
		if h.Status != state.HostReady {
			continue
		}
		if s.liveOrJoining(h.ID) {
			continue
		}
		if _, err := s.apply(ctx, fsm.TypeDisconnectHost, fsm.DisconnectHost{HostID: h.ID, Epoch: h.Epoch, Down: true}); err != nil {
			s.log.Warn("recording an absent host failed", "host", h.ID, "err", err)
			continue
		}
		s.log.Warn("host has no agent session after the grace period; marked down", "host", h.ID)
	}
}

// liveOrJoining reports whether the host has a session here, or one being
// set up (its registration committed, the session not yet listed).
func (s *Server) liveOrJoining(hostID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, live := s.sessions[hostID]
	return live || s.joining[hostID] > 0
}
