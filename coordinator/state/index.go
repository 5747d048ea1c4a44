package state

import "github.com/flotilla-vm/flotilla/coordinator/lifecycle"

// An index is what the store derives from its records to answer a read
// without a pass over all of them. Every index is declared once, in
// declareIndexes, and told of every change of a record: a commit's, a
// removal's, a Load's. None is kept by hand on any of those paths, so
// none can be forgotten on one.
type index interface {
	// reset empties the index, for a store at revision rev.
	reset(rev int64)
	// instance, operation and host tell of a record changed from old to
	// now at revision rev; old is nil for a new record, now nil for one
	// removed.
	instance(old, now *Instance, rev int64)
	operation(old, now *Operation, rev int64)
	host(old, now *Host, rev int64)
}

// declareIndexes lists the store's indexes: the one place they are declared.
func (s *Store) declareIndexes() {
	s.stopped = instanceSet{holds: stoppedUnexpectedly}
	s.deleted = instanceSet{holds: func(i *Instance) bool { return i.Status() == lifecycle.StatusDeleted }}
	s.booting = instanceSet{holds: func(i *Instance) bool { return i.Guest.State == lifecycle.GuestBooting }}
	// A nil check, not a status: every replica runs it on every change.
	s.confirmable = instanceSet{holds: func(i *Instance) bool { return i.Resize != nil && !i.Resize.ConfirmBy.IsZero() }}
	s.indexes = []index{&s.byInst, &s.hosted, &s.waiting, &s.stopped, &s.deleted, &s.booting, &s.confirmable, &s.placed, &s.order, &s.addrs, &s.projUse}
}

func (s *Store) indexInstance(old, now *Instance, rev int64) {
	for _, x := range s.indexes {
		x.instance(old, now, rev)
	}
}

func (s *Store) indexOperation(old, now *Operation, rev int64) {
	for _, x := range s.indexes {
		x.operation(old, now, rev)
	}
}

func (s *Store) indexHost(old, now *Host, rev int64) {
	for _, x := range s.indexes {
		x.host(old, now, rev)
	}
}

// ignores is the part of an index for the records it does not follow.
type ignores struct{}

func (ignores) instance(old, now *Instance, rev int64)   {}
func (ignores) operation(old, now *Operation, rev int64) {}
func (ignores) host(old, now *Host, rev int64)           {}

// opsByInstance lists each instance's operations, in acceptance order.
type opsByInstance struct {
	ignores
	ids map[string][]string
}

func (x *opsByInstance) reset(int64) { x.ids = map[string][]string{} }

func (x *opsByInstance) operation(old, now *Operation, _ int64) {
	if old == nil && now != nil {
		x.ids[now.InstanceID] = append(x.ids[now.InstanceID], now.ID)
	}
}

func (x *opsByInstance) instance(old, now *Instance, _ int64) {
	if now == nil {
		delete(x.ids, old.ID)
	}
}

// hostedOps holds the ids of the operations not done that have a host:
// the ones the orchestrator dispatches and times out.
type hostedOps struct {
	ignores
	ids map[string]bool
}

func (x *hostedOps) reset(int64) { x.ids = map[string]bool{} }

func (x *hostedOps) operation(old, now *Operation, _ int64) {
	if now != nil && !now.State.Done() && now.HostID != "" {
		x.ids[now.ID] = true
	} else if old != nil {
		delete(x.ids, old.ID)
	}
}

// instanceSet holds the ids of the instances holds is true of.
type instanceSet struct {
	ignores
	holds func(*Instance) bool
	ids   map[string]bool
}

func (x *instanceSet) reset(int64) { x.ids = map[string]bool{} }

func (x *instanceSet) instance(old, now *Instance, _ int64) {
	if now != nil && x.holds(now) {
		x.ids[now.ID] = true
	} else if old != nil {
		delete(x.ids, old.ID)
	}
}

// opID is the id of the operation changed from old to now.
func opID(old, now *Operation) string {
	if old != nil {
		return old.ID
	}
	return now.ID
}
