package state

import (
	"sort"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// The leader's loops must not cost O(open operations) on every pass: with
// many creates waiting for capacity (no host has room, or none is up), a
// pass over all of them per commit is what bounds the write rate. So the
// store keeps, at every commit, what those loops ask for: the operations
// that have a host (dispatched and timed out by the orchestrator), and the
// creates waiting for capacity, in the order they began to wait, with the
// revision at which room last could have appeared. A waiting instance then
// needs a placement attempt only when it arrives or when room may have
// appeared, as Nomad retries a blocked evaluation only when capacity changes.

// waitingOp reports whether o is a create waiting for capacity.
func waitingOp(o *Operation) bool {
	return o.Kind == lifecycle.OpCreate && o.State == OpPending && o.HostID == ""
}

// arrival is one operation beginning to wait, at a revision.
type arrival struct {
	rev  int64
	opID string
}

// indexOpLocked keeps the hosted and waiting indexes in step with o,
// committed at rev.
func (s *Store) indexOpLocked(o *Operation, rev int64) {
	id := o.ID
	if !o.State.Done() && o.HostID != "" {
		s.hosted[id] = true
	} else {
		delete(s.hosted, id)
	}
	_, was := s.waiting[id]
	switch now := waitingOp(o); {
	case now && !was:
		s.waiting[id] = rev
		s.arrivals = append(s.arrivals, arrival{rev: rev, opID: id})
	case !now && was:
		delete(s.waiting, id)
		// Ended arrivals are dropped in bulk, so the log stays within a
		// constant factor of what waits, at O(1) amortized per commit.
		if len(s.arrivals) > 2*len(s.waiting)+1024 {
			s.compactArrivals()
		}
	}
}

func (s *Store) compactArrivals() {
	kept := s.arrivals[:0]
	for _, a := range s.arrivals {
		if s.waiting[a.opID] == a.rev {
			kept = append(kept, a)
		}
	}
	clear(s.arrivals[len(kept):])
	s.arrivals = kept
}

// freesRoom reports whether a change of an instance from old to now could
// let a waiting instance fit where it did not: what it took on a host (its
// own, or a move's target) was released or changed, or it is a preemptible
// instance (placed, evicted, or becoming idle and so evictable: a normal
// instance may make room by evicting it).
func freesRoom(old, now *Instance) bool {
	if (old != nil && old.Placement.Preemptible) || (now != nil && now.Placement.Preemptible) {
		return counts(old) || counts(now)
	}
	if !counts(old) {
		return false // it took nothing: nothing was released
	}
	return !counts(now) || now.HostID != old.HostID || now.MoveTarget != old.MoveTarget || !equalPtr(now.Resize, old.Resize) ||
		now.Spec != old.Spec || now.Placement.Group != old.Placement.Group
}

// Waiting returns the instances whose create is waiting for capacity and
// that need a placement attempt after revision since: all of them if room
// may have appeared since then (a host was added or changed, an instance
// released what it took, a preemptible instance changed), otherwise only
// those that began waiting after it. Normal instances come first, then
// preemptible ones, each oldest first. rev is the revision they reflect:
// pass it as since next time.
func (s *Store) Waiting(since int64) (insts []Instance, all bool, rev int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all = since < s.roomRev
	from := 0
	if !all {
		from = sort.Search(len(s.arrivals), func(i int) bool { return s.arrivals[i].rev > since })
	}
	for _, a := range s.arrivals[from:] {
		if s.waiting[a.opID] != a.rev {
			continue // no longer waiting, or waiting again since a later arrival
		}
		op := s.ops[a.opID]
		if i, ok := s.instances[op.InstanceID]; ok && i.CurrentOp == op.ID {
			insts = append(insts, *i.clone())
		}
	}
	// Arrivals are in acceptance order; stable, so each class stays oldest first.
	sort.SliceStable(insts, func(a, b int) bool {
		return !insts[a].Placement.Preemptible && insts[b].Placement.Preemptible
	})
	return insts, all, s.rev
}

// HostedOperations returns copies of every operation not yet done that has
// a host, oldest first: the ones the orchestrator dispatches and times out.
// Creates waiting for capacity are not among them (see Waiting).
func (s *Store) HostedOperations() []Operation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Operation, 0, len(s.hosted))
	for id := range s.hosted {
		out = append(out, *s.ops[id].clone())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out
}

// stoppedUnexpectedly reports whether recovery may have to act on i: its
// guest stopped or crashed without a request, and nothing is in flight.
func stoppedUnexpectedly(i *Instance) bool {
	if i.CurrentOp != "" {
		return false
	}
	st := i.Status()
	return st == lifecycle.StatusUnexpectedShutoff || st == lifecycle.StatusCrashed
}

// indexInstanceLocked keeps the indexes of unexpectedly stopped and of
// deleted instances in step with i.
func (s *Store) indexInstanceLocked(i *Instance) {
	if stoppedUnexpectedly(i) {
		s.stopped[i.ID] = true
	} else {
		delete(s.stopped, i.ID)
	}
	if i.Status() == lifecycle.StatusDeleted {
		s.deleted[i.ID] = true
	} else {
		delete(s.deleted, i.ID)
	}
}

// EachStoppedUnexpectedly calls fn, under the read lock and without
// copying, for every instance whose guest stopped or crashed without a
// request and that has no operation in flight: the ones the leader's
// recovery loop acts on, kept at every commit so that loop costs
// O(such instances), not O(instances). fn must neither keep nor change the
// record, nor call back into the store.
func (s *Store) EachStoppedUnexpectedly(fn func(*Instance)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range s.stopped {
		fn(s.instances[id])
	}
}
