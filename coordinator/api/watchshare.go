package api

import (
	"sync"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// sharedPB converts each committed instance record to its wire form once
// for all watchers, rather than once per watcher: with many clients
// watching every instance, the conversion (and its garbage) was paid per
// watcher per change. Committed records are never changed (the history
// shares them, see state.Change), so a record's pointer identifies its
// content, and the message built from it is only ever read (marshalled by
// each stream) once shared.
//
// It holds the last sharedPBSize records converted, evicting the oldest.
type sharedPB struct {
	mu   sync.Mutex
	m    map[*state.Instance]*pb.Instance
	ring []*state.Instance
	next int
}

const sharedPBSize = 8192

func newSharedPB() *sharedPB {
	return &sharedPB{m: make(map[*state.Instance]*pb.Instance, sharedPBSize), ring: make([]*state.Instance, sharedPBSize)}
}

// get returns i's message, converting it with conv the first time.
func (c *sharedPB) get(i *state.Instance, conv func(*state.Instance) *pb.Instance) *pb.Instance {
	c.mu.Lock()
	m, ok := c.m[i]
	c.mu.Unlock()
	if ok {
		return m
	}
	m = conv(i) // outside the lock: watchers convert different records at once
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[i]; ok {
		return prev // another watcher converted it meanwhile
	}
	if old := c.ring[c.next]; old != nil {
		delete(c.m, old)
	}
	c.ring[c.next] = i
	c.next = (c.next + 1) % len(c.ring)
	c.m[i] = m
	return m
}
