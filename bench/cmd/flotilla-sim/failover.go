package main

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// failoverRun is a leader closed in the middle of the create phase.
type failoverRun struct {
	done      chan struct{}
	killed    string        // the closed coordinator's API address
	at        time.Time     // when it was closed
	elected   time.Duration // until another coordinator led
	closeTook time.Duration
}

// failoverResult is what the report says of it.
type failoverResult struct {
	ran              bool
	killed           string
	elected          time.Duration
	firstAck         time.Duration // until the first create acknowledged after the close
	firstStartedAck  time.Duration // until the first create issued after the close was acknowledged
	acksBefore, lost int
}

// failover closes the leading coordinator once o.failoverAfter creates are
// acknowledged (none if 0), in the background.
func (c *cluster) failover(ctx context.Context, o options, w *watcher) *failoverRun {
	f := &failoverRun{done: make(chan struct{})}
	if o.failoverAfter == 0 {
		close(f.done)
		return f
	}
	go func() {
		defer close(f.done)
		for c.ackedN.Load() < int64(o.failoverAfter) {
			if sleep(ctx, 5*time.Millisecond) != nil {
				return
			}
		}
		i, n := c.leader()
		if n == nil {
			logf("failover: no leader to close")
			return
		}
		f.killed, f.at = n.Addr(), time.Now()
		c.closed[i] = true
		go func() {
			t := time.Now()
			_ = n.Close()
			f.closeTook = time.Since(t)
		}()
		logf("failover: closed the leader %s after %d acknowledged creates", f.killed, c.ackedN.Load())
		for {
			if j, _ := c.leader(); j >= 0 && j != i {
				f.elected = time.Since(f.at)
				logf("failover: %s leads %s after the close", c.nodes[j].Addr(), f.elected.Round(time.Millisecond))
				return
			}
			if sleep(ctx, 2*time.Millisecond) != nil {
				return
			}
		}
	}()
	return f
}

// result waits for the failover to finish and measures it against the
// acknowledged creates.
func (f *failoverRun) result(cr createResult) failoverResult {
	<-f.done
	if f.at.IsZero() {
		return failoverResult{}
	}
	r := failoverResult{ran: true, killed: f.killed, elected: f.elected}
	for k, ack := range cr.ackTimes {
		start := ack.Add(-cr.latencies[k])
		if !ack.After(f.at) {
			r.acksBefore++
			continue
		}
		if d := ack.Sub(f.at); r.firstAck == 0 || d < r.firstAck {
			r.firstAck = d
		}
		if d := ack.Sub(f.at); start.After(f.at) && (r.firstStartedAck == 0 || d < r.firstStartedAck) {
			r.firstStartedAck = d
		}
	}
	return r
}

// snapshotResult is the leader's state as a Raft snapshot.
type snapshotResult struct {
	bytes      int64
	encodeTook time.Duration // the state written out (what a snapshot persists)
	raftTook   time.Duration // a Raft snapshot forced on the leader, end to end
	err        error
}

// snapshot measures the leader's state snapshot.
func (c *cluster) snapshot() snapshotResult {
	_, n := c.leader()
	if n == nil {
		return snapshotResult{}
	}
	var r snapshotResult
	var cw countingWriter
	t := time.Now()
	if r.err = n.Store.WriteSnapshot(&cw); r.err != nil {
		return r
	}
	r.encodeTook, r.bytes = time.Since(t), cw.n.Load()
	t = time.Now()
	_, r.err = n.Raft.Snapshot()
	r.raftTook = time.Since(t)
	return r
}

type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)
