// Package readyz says whether a coordinator is ready: it knows a leader
// and has applied everything it knows committed, so that what it serves
// is current. A member cut off from its quorum soon knows no leader.
package readyz

import (
	"errors"
	"fmt"
)

// Raft is this member's Raft node (raftstore.Store).
type Raft interface {
	Leader() (addr, id string)
	Indexes() (last, commit, applied uint64)
}

// ErrNoLeader: the member knows no leader (an election runs, or it is cut
// off from the quorum).
var ErrNoLeader = errors.New("no known raft leader")

// Check returns nil if the member is ready, else why not, in one line.
func Check(r Raft) error {
	if _, id := r.Leader(); id == "" {
		return ErrNoLeader
	}
	if _, commit, applied := r.Indexes(); applied < commit {
		return fmt.Errorf("applied index %d is behind commit index %d", applied, commit)
	}
	return nil
}
