package libvirt

import (
	"context"
	"errors"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

const (
	// eventBuffer absorbs bursts so that a slow reader does not hold up the
	// translation of the next event.
	eventBuffer = 64
	// eventStateTimeout bounds the state query made for each event.
	eventStateTimeout = 5 * time.Second
)

// Events streams the power state of Flotilla domains after each libvirt
// lifecycle event. Each event carries the state queried after the event, so
// Events, Status and List share one mapping. The channel closes when ctx
// ends, the driver closes or the connection to libvirtd drops.
func (d *Driver) Events(ctx context.Context) (<-chan hypervisor.Event, error) {
	l, err := d.conn.get()
	if err != nil {
		return nil, wrapErr("subscribe to events", "", err)
	}

	// The subscription lives until the caller's ctx or the driver ends.
	subCtx, cancel := context.WithCancel(d.life)
	stopOnCaller := context.AfterFunc(ctx, cancel)

	type result struct {
		ch  <-chan golibvirt.DomainEventLifecycleMsg
		err error
	}
	res := make(chan result, 1)
	go func() {
		ch, err := l.LifecycleEvents(subCtx)
		res <- result{ch, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		cancel()
		go func() { // drain so go-libvirt's forwarding goroutine can exit
			if r := <-res; r.err == nil {
				for range r.ch {
				}
			}
		}()
		return nil, wrapErr("subscribe to events", "", ctx.Err())
	}
	if r.err != nil {
		stopOnCaller()
		cancel()
		return nil, wrapErr("subscribe to events", "", r.err)
	}

	out := make(chan hypervisor.Event, eventBuffer)
	go func() {
		defer close(out)
		defer stopOnCaller()
		defer cancel()
		// Read until go-libvirt closes its channel (ctx ended or the
		// connection dropped): it blocks on sends, so stopping early would
		// leak its goroutine.
		for msg := range r.ch {
			id, ok := idFromDomainName(msg.Dom.Name)
			if !ok || subCtx.Err() != nil {
				continue
			}
			ev, ok := d.eventStatus(subCtx, l, msg, id)
			if !ok {
				continue
			}
			select {
			case out <- ev:
			case <-subCtx.Done():
			}
		}
		d.log.Debug("event subscription ended")
	}()
	return out, nil
}

// eventStatus reads the domain's state after a lifecycle event, on the
// subscription's own connection.
func (d *Driver) eventStatus(ctx context.Context, l *golibvirt.Libvirt, msg golibvirt.DomainEventLifecycleMsg, id string) (hypervisor.Event, bool) {
	ctx, cancel := context.WithTimeout(ctx, eventStateTimeout)
	defer cancel()

	type result struct {
		s   domainState
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := observeDomain(l, msg.Dom)
		res <- result{s, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	switch {
	case isNoDomain(r.err):
		r.s = noDomainState()
	case r.err != nil && ctx.Err() != nil && errors.Is(r.err, context.Canceled):
		return hypervisor.Event{}, false // the subscription is ending
	case r.err != nil:
		// Usually the connection is going down, which closes the stream next.
		d.instanceLog(id).Warn("state after lifecycle event unavailable", "event", msg.Event, "err", r.err)
		return hypervisor.Event{}, false
	}
	return hypervisor.Event{DomainStatus: hypervisor.DomainStatus{
		ID: id, State: r.s.state, Reason: r.s.reason, ObservedAt: time.Now(),
	}}, true
}
