package watchfeed

import (
	"context"
	"sync"
	"time"
)

// Gate paces watchers replaying history: a page of history is sent by at
// most a few watchers at once, so that hundreds replaying together take
// the CPU of some cores, not of every one, and other calls still find one
// free. A watcher holds its place for at most hold: one whose client does
// not read blocks in its send without blocking the others.
type Gate struct {
	slots chan struct{}
	hold  time.Duration
}

// NewGate admits n watchers at once (at least 1), each for at most hold.
func NewGate(n int, hold time.Duration) *Gate {
	return &Gate{slots: make(chan struct{}, max(n, 1)), hold: hold}
}

// Enter waits for a place, and returns the function that leaves it (which
// may be called more than once), or ctx's error.
func (g *Gate) Enter(ctx context.Context) (leave func(), err error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	free := func() { once.Do(func() { <-g.slots }) }
	t := time.AfterFunc(g.hold, free)
	return func() { t.Stop(); free() }, nil
}
