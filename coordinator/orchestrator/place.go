package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// CreateDeadline bounds a create once it has a host.
const CreateDeadline = 5 * time.Minute

// place gives waiting instances a host as soon as one has room: normal
// instances first, then preemptible ones, oldest first within each. A
// normal instance that fits nowhere may evict preemptible instances; it is
// placed once they are gone, on a later pass.
//
// A waiting instance is tried when it arrives and again only when room may
// have appeared (the store tells: a host changed, an instance released what
// it took, a preemptible instance changed) or after a failure that was not
// a lack of room, so a pass costs O(new arrivals), not O(waiting), while
// nothing changes: with thousands waiting, a pass over all of them per
// commit would bound the write rate.
func (o *Orchestrator) place(ctx context.Context, now time.Time) {
	// This pass covers the state up to rev, read before the hosts: whatever
	// changes after it (room freed, a host opening, an eviction ending)
	// makes the waiting instances due again on the next pass, even if this
	// pass saw it only in part (say, an eviction already ended but its room
	// not yet free in the view).
	rev := o.cfg.Store.Revision()
	view := placement.FromStore(o.cfg.Store)
	since := o.waitSeen
	if o.retryWaiting {
		since = 0
	}
	o.waitSeen, o.retryWaiting = rev, false
	if !anyOpen(view) {
		return // nothing can be placed anywhere, so nothing is read
	}
	waiting, _, _ := o.cfg.Store.Waiting(since)
	if len(waiting) == 0 {
		return
	}
	for _, inst := range waiting {
		if ctx.Err() != nil {
			return
		}
		if o.stillEvicting(inst.ID) {
			continue // tried again when the evictions end: they release room
		}
		req := placement.Request(inst.Spec, inst.Placement)
		d, err := scheduler.Place(req, view, o.cfg.Policy)
		if errors.Is(err, scheduler.ErrNoHost) {
			continue // waits for capacity
		}
		if err != nil {
			o.log.Warn("placement failed", "instance", inst.ID, "err", err)
			o.retryWaiting = true
			continue
		}
		log := o.log.With("instance", inst.ID, "host", d.HostID)
		if len(d.Preempt) > 0 {
			cmd := fsm.Preempt{For: inst.ID}
			for _, victim := range d.Preempt {
				cmd.Victims = append(cmd.Victims, state.Operation{ID: ids.New("op-"), InstanceID: victim, Deadline: now.Add(3 * time.Minute)})
			}
			v, err := o.applyValue(ctx, fsm.TypePreempt, cmd)
			if err != nil {
				log.Warn("preemption refused", "err", err)
				o.retryWaiting = true
				continue
			}
			started, _ := v.([]string)
			o.evicting[inst.ID] = started
			log.Info("evicting preemptible instances to make room", "victims", d.Preempt)
			continue
		}
		err = o.apply(ctx, fsm.TypePlace, fsm.Place{InstanceID: inst.ID, HostID: d.HostID, Deadline: now.Add(CreateDeadline), Policy: o.cfg.Policy})
		if err != nil {
			log.Info("placement not committed; will retry", "err", err)
			o.retryWaiting = true
			continue
		}
		delete(o.evicting, inst.ID)
		log.Info("waiting instance placed")
		// Keep this pass's view current for the next waiting instance.
		for i := range view {
			if view[i].ID == d.HostID {
				view[i] = scheduler.Assign(view[i], inst.ID, req)
			}
		}
	}
}

// stillEvicting reports whether evictions started for a waiting instance are still running.
func (o *Orchestrator) stillEvicting(id string) bool {
	for _, opID := range o.evicting[id] {
		if op, err := o.cfg.Store.Operation(opID); err == nil && !op.State.Done() {
			return true
		}
	}
	delete(o.evicting, id)
	return false
}

func (o *Orchestrator) applyValue(ctx context.Context, typ string, body any) (any, error) {
	return fsm.Propose(ctx, o.cfg.Applier, typ, o.cfg.Now(), body)
}

// anyOpen reports whether some host takes instances at all.
func anyOpen(view []scheduler.Host) bool {
	for _, h := range view {
		if h.Ready && !h.Cordoned {
			return true
		}
	}
	return false
}
