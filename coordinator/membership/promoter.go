package membership

import (
	"context"
	"log/slog"
	"time"
)

// Cluster is the leader's view of the Raft configuration and the changes
// the promoter makes to it.
type Cluster interface {
	// Members is the configuration, with what the leader heard from each,
	// and the configuration's index.
	Members() ([]Member, uint64, error)
	// LastIndex is the leader's last log index.
	LastIndex() uint64
	// Promote makes a non-voter a voter (raft AddVoter), if the
	// configuration is still the one at prevIndex.
	Promote(id, raftAddr string, prevIndex uint64, timeout time.Duration) error
}

// Promote runs on the leader until ctx ends: every tick it promotes each
// non-voter that has been live and caught up for StableFor, unless that
// would leave the voters without a live quorum. A non-voter that falls
// behind or goes silent starts its period again.
func Promote(ctx context.Context, c Cluster, p Policy, tick time.Duration, log *slog.Logger) {
	since := map[string]time.Time{} // non-voter id -> caught up since
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		members, index, err := c.Members()
		if err != nil {
			continue
		}
		now, last := time.Now(), c.LastIndex()
		seen := map[string]bool{}
		for _, m := range members {
			if m.Voter {
				continue
			}
			seen[m.ID] = true
			if !p.CaughtUp(m, last, now) {
				delete(since, m.ID)
				continue
			}
			if _, ok := since[m.ID]; !ok {
				since[m.ID] = now
			}
			if now.Sub(since[m.ID]) < p.StableFor {
				continue
			}
			if err := p.CheckPromote(members, m.ID, now); err != nil {
				log.Warn("not promoting a caught-up non-voter", "server", m.ID, "err", err)
				continue
			}
			if err := c.Promote(m.ID, m.RaftAddr, index, 10*time.Second); err != nil {
				log.Warn("promoting a non-voter failed", "server", m.ID, "err", err)
				continue
			}
			delete(since, m.ID)
			log.Info("non-voter caught up: promoted to voter", "server", m.ID, "last_index", m.LastIndex, "leader_last_index", last)
			break // one change at a time: the next tick sees the new configuration
		}
		for id := range since {
			if !seen[id] {
				delete(since, id)
			}
		}
	}
}
