package orchestrator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/placer"
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
	since := o.waitSeen
	if o.retryWaiting {
		since = 0
	}
	o.waitSeen, o.retryWaiting = rev, false
	if !o.cfg.Store.AnyHostOpen() {
		return // nothing can be placed anywhere, so nothing is read
	}
	// The waiting next: with none due (most passes), the view of every
	// host is not built at all.
	waiting, _, _ := o.cfg.Store.Waiting(since)
	if len(waiting) == 0 {
		return
	}
	view := placement.FromStore(o.cfg.Store)
	at := make(map[string]int, len(view))
	for i := range view {
		at[view[i].ID] = i
	}
	var batch []fsm.Place
	for _, inst := range waiting {
		if ctx.Err() != nil {
			break
		}
		if o.stillEvicting(inst.ID) {
			continue // tried again when the evictions end: they release room
		}
		req := placement.Request(inst.Spec, inst.Placement)
		// One view for the whole pass, kept current as it places (the
		// placements commit together at the end); a sample of it first, so
		// that a backlog costs O(waiting), not O(waiting x hosts).
		d, err := o.choose(req, view)
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
		// Keep this pass's view current for the next waiting instance.
		if i, ok := at[d.HostID]; ok {
			view[i] = scheduler.Assign(view[i], inst.ID, req)
		}
		batch = append(batch, fsm.Place{InstanceID: inst.ID, HostID: d.HostID, Deadline: now.Add(CreateDeadline), Policy: o.cfg.Policy})
	}
	o.commitPlacements(ctx, batch)
}

// commitPlacements commits a pass's placements together: proposed at once,
// they go into the log as one batch entry (group commit), each still
// checked on its own at commit time.
func (o *Orchestrator) commitPlacements(ctx context.Context, batch []fsm.Place) {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = o.apply(ctx, fsm.TypePlace, batch[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		log := o.log.With("instance", batch[i].InstanceID, "host", batch[i].HostID)
		if err != nil {
			log.Info("placement not committed; will retry", "err", err)
			o.retryWaiting = true
			continue
		}
		delete(o.evicting, batch[i].InstanceID)
		log.Info("waiting instance placed")
	}
}

// choose ranks a random sample of view (scheduler.Choose) and, when no
// sampled host fits, all of it (scheduler.Place: it may preempt).
func (o *Orchestrator) choose(req scheduler.Request, view []scheduler.Host) (scheduler.Decision, error) {
	if len(view) > placer.Sample {
		sample := make([]scheduler.Host, placer.Sample)
		for i := range sample {
			sample[i] = view[o.rng.IntN(len(view))]
		}
		if id, ok := scheduler.Choose(req, sample, o.cfg.Policy, o.rng.IntN); ok {
			return scheduler.Decision{HostID: id}, nil
		}
	}
	return scheduler.Place(req, view, o.cfg.Policy)
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
