package raftstore

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is what this server, while it leads, last heard from one other
// server over the Raft transport itself: the time of its last successful
// answer to an AppendEntries (heartbeats included, sent many times per
// second) and the last log index it reported then. Nothing an API client
// says feeds it, so a made-up server that never answers never looks live.
type Peer struct {
	LastContact time.Time // zero: never answered
	LastIndex   uint64
}

// contactTransport is the Raft transport, recording every successful
// AppendEntries answer per server. Raft sends heartbeats through the
// unpipelined AppendEntries even while it pipelines replication, so every
// live follower is heard from at least every heartbeat interval.
// Embedding keeps every optional interface of the transport (pre-vote,
// close) visible to Raft.
type contactTransport struct {
	*raft.NetworkTransport
	mu    sync.Mutex
	peers map[raft.ServerID]Peer
}

func newContactTransport(t *raft.NetworkTransport) *contactTransport {
	return &contactTransport{NetworkTransport: t, peers: map[raft.ServerID]Peer{}}
}

func (c *contactTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := c.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success {
		c.mu.Lock()
		c.peers[id] = Peer{LastContact: time.Now(), LastIndex: resp.LastLog}
		c.mu.Unlock()
	}
	return err
}

// peer returns what was last heard from id.
func (c *contactTransport) peer(id string) Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peers[raft.ServerID(id)]
}
