package fsm

import (
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// TypeRemoveHost forgets a host (log version 6).
const TypeRemoveHost = "host.remove"

// RemoveHost forgets a host whose agent is not connected and on which
// nothing is placed.
type RemoveHost struct {
	HostID string
}

func (c *RemoveHost) toPB() *raftv1.RemoveHost    { return &raftv1.RemoveHost{HostId: c.HostID} }
func (c *RemoveHost) fromPB(m *raftv1.RemoveHost) { c.HostID = m.HostId }

func init() {
	commands[TypeRemoveHost] = def(LogVersion6, newPB[raftv1.RemoveHost], applyRemoveHost)
}

// applyRemoveHost checks again, at commit time, what the API checked: the
// host's agent is not connected (a connected one would go on reporting for
// a host that is gone), and no instance that is not deleted, nor any
// operation in flight, is placed on it.
func applyRemoveHost(tx *state.Tx, c *RemoveHost) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Status == state.HostReady {
		return nil, fmt.Errorf("host %q: its agent is connected; stop it first: %w", c.HostID, ErrConflict)
	}
	for _, i := range tx.InstancesOnHost(c.HostID) {
		if i.Desired != lifecycle.DesiredDeleted || i.CurrentOp != "" {
			return nil, fmt.Errorf("host %q: instance %s is placed on it; drain or delete it first: %w", c.HostID, i.ID, ErrInUse)
		}
	}
	tx.RemoveHost(c.HostID)
	forgetImagesOf(tx, c.HostID)
	return nil, nil
}
