package orchestrator

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
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
func (o *Orchestrator) place(ctx context.Context, open []state.Operation, now time.Time) {
	var waiting []state.Instance
	for _, op := range open {
		if op.HostID != "" || op.Kind != lifecycle.OpCreate || op.State != state.OpPending {
			continue
		}
		if inst, err := o.cfg.Store.Instance(op.InstanceID); err == nil && inst.CurrentOp == op.ID {
			waiting = append(waiting, inst)
		}
	}
	if len(waiting) == 0 {
		return
	}
	sort.SliceStable(waiting, func(a, b int) bool {
		return !waiting[a].Placement.Preemptible && waiting[b].Placement.Preemptible
	})
	view := placement.FromStore(o.cfg.Store)
	if !anyOpen(view) {
		return // nothing can be placed anywhere: don't try each waiting instance
	}
	for _, inst := range waiting {
		if ctx.Err() != nil {
			return
		}
		if o.stillEvicting(inst.ID) {
			continue
		}
		req := placement.Request(inst.Spec, inst.Placement)
		d, err := scheduler.Place(req, view, o.cfg.Policy)
		if errors.Is(err, scheduler.ErrNoHost) {
			continue // waits for capacity
		}
		if err != nil {
			o.log.Warn("placement failed", "instance", inst.ID, "err", err)
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
