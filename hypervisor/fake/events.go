package fake

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// subscriber is one Events channel. ch is closed, under Driver.mu, exactly
// once: when ctx ends, the driver closes, events break, or it overflows.
type subscriber struct {
	ch   chan hypervisor.Event
	done chan struct{} // closed with ch, releases the ctx watcher
}

// Events subscribes to every state change. The driver never blocks on a
// subscriber: one whose buffer (Options.EventBuffer) is full is cut off and
// must resubscribe and resync with List, as after a broken subscription.
func (d *Driver) Events(ctx context.Context) (<-chan hypervisor.Event, error) {
	if err := d.enter(ctx, "Events"); err != nil {
		return nil, err
	}
	s := &subscriber{ch: make(chan hypervisor.Event, d.opts.EventBuffer), done: make(chan struct{})}
	d.mu.Lock()
	// Re-check: Close or an outage may have come since enter.
	switch {
	case d.closed:
		d.mu.Unlock()
		return nil, fmt.Errorf("fake: Events: %w", ErrClosed)
	case d.unavailable:
		d.mu.Unlock()
		return nil, fmt.Errorf("fake: Events: %w", hypervisor.ErrUnavailable)
	}
	d.subs[s] = struct{}{}
	d.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.closeSubLocked(s)
			d.mu.Unlock()
		case <-s.done:
		}
	}()
	return s.ch, nil
}

// emitLocked hands an event to every subscriber without blocking.
func (d *Driver) emitLocked(st hypervisor.DomainStatus) {
	if d.dropEvents {
		return
	}
	for s := range d.subs {
		select {
		case s.ch <- hypervisor.Event{DomainStatus: st}:
		default:
			d.closeSubLocked(s)
		}
	}
}

func (d *Driver) closeSubLocked(s *subscriber) {
	if _, ok := d.subs[s]; !ok {
		return
	}
	delete(d.subs, s)
	close(s.ch)
	close(s.done)
}

func (d *Driver) closeSubsLocked() {
	for s := range d.subs {
		d.closeSubLocked(s)
	}
}
