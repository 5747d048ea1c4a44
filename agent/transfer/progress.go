package transfer

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Progress is how far one pull has got.
type Progress struct {
	InstanceID string
	Layer      hypervisor.DiskLayer
	Done       int64 // bytes of the image verified and handed on (holes included)
	Total      int64 // the image's size
	Rate       int64 // bytes of Done per second, over the last interval
	Sent       int64 // bytes received over the network (compressed; holes are free)
}

// DefaultProgressEvery is how often a running pull reports progress.
const DefaultProgressEvery = time.Second

// meter counts a pull's progress; the pulling goroutine writes, the
// reporting one reads.
type meter struct {
	done, total, sent atomic.Int64
}

// report calls fn every interval until stop is closed, with the rate of
// done over the interval.
func (m *meter) report(ctx context.Context, every time.Duration, base Progress, fn func(context.Context, Progress), stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	lastDone, lastAt := m.done.Load(), time.Now()
	emit := func() {
		now := time.Now()
		p := base
		p.Done, p.Total, p.Sent = m.done.Load(), m.total.Load(), m.sent.Load()
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			p.Rate = int64(float64(p.Done-lastDone) / dt)
		}
		lastDone, lastAt = p.Done, now
		fn(ctx, p)
	}
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			// A tick that waited in the channel while this goroutine was
			// held up comes right after the one before: a rate over that
			// sliver of time says nothing, so it is dropped.
			if time.Since(lastAt) < every/2 {
				continue
			}
			emit()
		}
	}
}
