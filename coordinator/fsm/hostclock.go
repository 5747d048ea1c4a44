package fsm

import (
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// TypeHostClock records a host's clock skew (log version 13).
const TypeHostClock = "host.clock"

// HostClock is a host's clock skew as the leader measured it from one
// session's heartbeats: the agent's clock minus the coordinator's.
type HostClock struct {
	HostID string
	Epoch  uint64
	Skew   time.Duration
}

func (c *HostClock) toPB() *raftv1.HostClock {
	return &raftv1.HostClock{HostId: c.HostID, Epoch: c.Epoch, SkewNanos: int64(c.Skew)}
}

func (c *HostClock) fromPB(m *raftv1.HostClock) {
	c.HostID, c.Epoch, c.Skew = m.HostId, m.Epoch, time.Duration(m.SkewNanos)
}

func init() {
	commands[TypeHostClock] = def(LogVersion13, newPB[raftv1.HostClock], applyHostClock)
}

// applyHostClock keeps the measurement of the host's current session only:
// a late one of an older session says nothing of the agent running now.
func applyHostClock(tx *state.Tx, c *HostClock) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Epoch != c.Epoch {
		return nil, fmt.Errorf("host %q epoch %d, current %d: %w", h.ID, c.Epoch, h.Epoch, ErrStaleEpoch)
	}
	h.ClockSkew, h.ClockMeasured = c.Skew, tx.Now()
	tx.PutHost(h)
	return nil, nil
}
