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

// waitQueue holds the creates waiting for capacity, in the order they
// began to wait, and the revision at which room last could have appeared.
type waitQueue struct {
	ops      map[string]int64 // ids of creates waiting -> revision they began waiting
	arrivals []arrival        // creates beginning to wait, by revision; may hold ended ones
	roomRev  int64
}

// reset empties the queue; room may have appeared anywhere (every waiting
// instance is worth a try).
func (q *waitQueue) reset(rev int64) {
	q.ops, q.arrivals, q.roomRev = map[string]int64{}, nil, rev
}

func (q *waitQueue) operation(old, now *Operation, rev int64) {
	id := opID(old, now)
	_, was := q.ops[id]
	switch waits := now != nil && waitingOp(now); {
	case waits && !was:
		q.ops[id] = rev
		q.arrivals = append(q.arrivals, arrival{rev: rev, opID: id})
	case !waits && was:
		delete(q.ops, id)
		// Ended arrivals are dropped in bulk, so the log stays within a
		// constant factor of what waits, at O(1) amortized per commit.
		if len(q.arrivals) > 2*len(q.ops)+1024 {
			q.compact()
		}
	}
}

func (q *waitQueue) compact() {
	kept := q.arrivals[:0]
	for _, a := range q.arrivals {
		if q.ops[a.opID] == a.rev {
			kept = append(kept, a)
		}
	}
	clear(q.arrivals[len(kept):])
	q.arrivals = kept
}

func (q *waitQueue) instance(old, now *Instance, rev int64) {
	if freesRoom(old, now) {
		q.roomRev = rev
	}
}

// host: registered, up, down, cordoned, resized: placement may differ now.
func (q *waitQueue) host(_, _ *Host, rev int64) { q.roomRev = rev }

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
	all = since < s.waiting.roomRev
	from := 0
	if !all {
		from = sort.Search(len(s.waiting.arrivals), func(i int) bool { return s.waiting.arrivals[i].rev > since })
	}
	for _, a := range s.waiting.arrivals[from:] {
		if s.waiting.ops[a.opID] != a.rev {
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
	out := make([]Operation, 0, len(s.hosted.ids))
	for id := range s.hosted.ids {
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

// EachStoppedUnexpectedly calls fn, under the read lock and without
// copying, for every instance whose guest stopped or crashed without a
// request and that has no operation in flight: the ones the leader's
// recovery loop acts on, kept at every commit so that loop costs
// O(such instances), not O(instances). fn must neither keep nor change the
// record, nor call back into the store.
func (s *Store) EachStoppedUnexpectedly(fn func(*Instance)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range s.stopped.ids {
		fn(s.instances[id])
	}
}

// EachBooting calls fn with every instance whose guest is booting. fn must
// not keep the record or change it.
func (s *Store) EachBooting(fn func(*Instance)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range s.booting.ids {
		fn(s.instances[id])
	}
}

// EachConfirmable calls fn with every instance whose resize has a confirm
// window (Resize.ConfirmBy set), whatever its status: the leader's check
// for resizes past their window reads these rather than every instance. fn
// must not keep the record or change it.
func (s *Store) EachConfirmable(fn func(*Instance)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range s.confirmable.ids {
		fn(s.instances[id])
	}
}
