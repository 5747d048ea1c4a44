package state

import (
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// Tx stages the changes of one log entry. Reads see staged changes; nothing
// is visible to others until Update commits, and nothing is kept if the
// apply function returns an error. A Tx is valid only during its Update.
type Tx struct {
	s          *Store
	now        time.Time
	instances  map[string]*Instance
	ops        map[string]*Operation
	hosts      map[string]*Host
	requests   map[string]string
	servers    map[string]*Server  // nil value: delete
	networks   map[string]*Network // nil value: delete
	projects   map[string]*Project
	images     map[string]*Image // nil value: remove
	order      []string          // instance ids in the order they were put, for the history
	removed    []string          // instance ids to forget (RemoveInstance)
	meter      bool              // StartMetering was called
	logVersion uint32            // SetLogVersion's, 0 if not called
}

// Update runs fn against a transaction and commits its changes atomically
// under one new revision. now is the entry's timestamp (chosen by the
// leader, so replicas agree).
func (s *Store) Update(now time.Time, fn func(tx *Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// One Tx, reused: entries apply one at a time under the lock, and a
	// Tx's maps allocated afresh for every entry were a good part of what
	// an entry allocated.
	tx := &s.tx
	if tx.s == nil {
		*tx = Tx{s: s, instances: map[string]*Instance{}, ops: map[string]*Operation{}, hosts: map[string]*Host{}, requests: map[string]string{}, servers: map[string]*Server{}, networks: map[string]*Network{}, projects: map[string]*Project{}, images: map[string]*Image{}}
	}
	tx.now = now
	defer tx.reset()
	if err := fn(tx); err != nil {
		return err
	}
	if len(tx.instances)+len(tx.ops)+len(tx.hosts)+len(tx.requests)+len(tx.servers)+len(tx.networks)+len(tx.projects)+len(tx.images)+len(tx.removed) == 0 && !tx.meter && tx.logVersion == 0 {
		return nil
	}
	s.rev++
	rev := s.rev
	if tx.logVersion > s.logVersion.Load() {
		s.logVersion.Store(tx.logVersion)
	}
	if tx.meter && !s.metering {
		// Every instance's history begins here, in the class it is in.
		s.metering = true
		for _, i := range s.instances {
			s.meterLocked(nil, i, now)
		}
	}
	for id, o := range tx.ops {
		old := s.ops[id]
		o.Revision = rev
		s.ops[id] = o
		s.indexOperation(old, o, rev)
		if s.opEnded != nil && o.State.Done() && (old == nil || !old.State.Done()) {
			s.opEnded(o.Kind, o.State, o.EndTime.Sub(o.CreateTime))
		}
	}
	for k, v := range tx.requests {
		s.requests[k] = v
	}
	for id, h := range tx.hosts {
		old := s.hosts[id]
		if h == nil { // RemoveHost
			if old != nil {
				delete(s.hosts, id)
				s.indexHost(old, nil, rev)
			}
			continue
		}
		h.ModifyRev = rev
		s.hosts[id] = h
		s.indexHost(old, h, rev)
	}
	for id, v := range tx.servers {
		if v == nil {
			delete(s.servers, id)
		} else {
			s.servers[id] = *v
		}
	}
	for name, n := range tx.networks {
		if n == nil {
			delete(s.networks, name)
			continue
		}
		if n.CreateRev == 0 {
			n.CreateRev, n.CreateTime = rev, now
		}
		s.networks[name] = n
	}
	for name, p := range tx.projects {
		if p.CreateRev == 0 {
			p.CreateRev, p.CreateTime = rev, now
		}
		s.projects[name] = p
	}
	for name, im := range tx.images {
		if im == nil {
			delete(s.images, name)
			continue
		}
		if im.CreateRev == 0 {
			im.CreateRev, im.CreateTime = rev, now
		}
		s.images[name] = im
	}
	// Apply functions may put instances in map order; commit them sorted so
	// every replica records the same history in the same order.
	sort.Strings(tx.order)
	for _, id := range tx.order {
		i := tx.instances[id]
		if i.CreateRev == 0 {
			i.CreateRev = rev
			i.CreateTime = now
		}
		i.ModifyRev = rev
		i.UpdateTime = now
		old := s.instances[id]
		s.indexInstance(old, i, rev)
		s.meterLocked(old, i, now)
		s.instances[id] = i
		s.history = append(s.history, change{Revision: rev, Instance: i})
	}
	// Removals come last, so an entry cannot put back what it removed.
	// Watchers get no event: the last one they saw said DELETED.
	sort.Strings(tx.removed)
	for _, id := range tx.removed {
		s.removeLocked(id)
	}
	// Trim in chunks (an eighth of the limit at a time), so the copy is
	// paid once per many commits rather than on every one.
	// The kept events move down in place: the array is reused rather than
	// reallocated (tens of MB at the default limit), and readers only ever
	// get copies of it.
	if over := len(s.history) - s.limit; over > s.limit/8 {
		s.floor = s.history[over-1].Revision
		n := copy(s.history, s.history[over:])
		clear(s.history[n:])
		s.history = s.history[:n]
	}
	s.notify()
	return nil
}

// reset empties the transaction for the next entry.
func (tx *Tx) reset() {
	clear(tx.instances)
	clear(tx.ops)
	clear(tx.hosts)
	clear(tx.requests)
	clear(tx.servers)
	clear(tx.networks)
	clear(tx.projects)
	clear(tx.images)
	clear(tx.order)
	tx.order = tx.order[:0]
	clear(tx.removed)
	tx.removed = tx.removed[:0]
	tx.meter = false
	tx.logVersion = 0
	tx.now = time.Time{}
}

// LogVersion is the cluster's log version, staged change included.
func (tx *Tx) LogVersion() uint32 { return max(tx.logVersion, tx.s.logVersion.Load()) }

// SetLogVersion stages raising the cluster's log version.
func (tx *Tx) SetLogVersion(v uint32) { tx.logVersion = v }

// Now is the entry's timestamp.
func (tx *Tx) Now() time.Time { return tx.now }

// Revision is the revision this transaction will commit as.
func (tx *Tx) Revision() int64 { return tx.s.rev + 1 }

// Instance returns a mutable copy of an instance; Put it to keep changes.
func (tx *Tx) Instance(id string) (*Instance, bool) {
	if i, ok := tx.instances[id]; ok {
		return i.clone(), true
	}
	i, ok := tx.s.instances[id]
	if !ok {
		return nil, false
	}
	return i.clone(), true
}

// PutInstance stages a copy of an instance: i stays the caller's. A guest's
// boot report holds only while its domain is up: whatever took the domain
// down (a stop, a crash, a move), the record forgets it here, in one place,
// and the next boot reports afresh. A host not heard from (power unknown)
// forgets nothing: its guest most likely runs on, and says so again (a v2
// guest side with its boot id, so that a reboot meanwhile is told apart)
// when its agent is back; readiness shows nothing meanwhile.
func (tx *Tx) PutInstance(i *Instance) {
	if _, ok := tx.instances[i.ID]; !ok {
		tx.order = append(tx.order, i.ID)
	}
	c := i.clone()
	if !c.Power.Up() && c.Power != lifecycle.PowerUnknown {
		c.Guest = GuestFacts{}
	}
	tx.instances[i.ID] = c
}

// StartMetering stages the start of usage recording (see Store.Metering).
// It is a log entry of its own, not a property of the code applying the
// log: replicas that replay entries written before it, from whatever
// snapshot, then all start recording at the same entry and agree.
func (tx *Tx) StartMetering() { tx.meter = true }

// Metering reports whether usage is recorded, StartMetering included.
func (tx *Tx) Metering() bool { return tx.meter || tx.s.metering }

// RemoveInstance stages forgetting an instance with its operations, the
// request ids that produced them and its usage history (see
// Store.DeletedBefore). It takes effect at commit, after the entry's
// other changes.
func (tx *Tx) RemoveInstance(id string) { tx.removed = append(tx.removed, id) }

// Operation returns a mutable copy of an operation; Put it to keep changes.
func (tx *Tx) Operation(id string) (*Operation, bool) {
	if o, ok := tx.ops[id]; ok {
		return o.clone(), true
	}
	o, ok := tx.s.ops[id]
	if !ok {
		return nil, false
	}
	return o.clone(), true
}

// PutOperation stages a copy of an operation (o stays the caller's); a
// new one gets the next sequence number.
func (tx *Tx) PutOperation(o *Operation) { tx.putOperation(o, tx.s.internedClone(o)) }

// putOperation stages c, the store's own copy of o.
func (tx *Tx) putOperation(o, c *Operation) {
	if _, staged := tx.ops[o.ID]; !staged {
		if _, existed := tx.s.ops[o.ID]; !existed {
			tx.s.seq++
			c.Seq = tx.s.seq
		}
	}
	tx.ops[o.ID] = c
}

// PutOperationPlanned stages a copy of an operation that has not begun,
// with plan for its steps: a shared array that is never written (the
// fsm's plan of the operation's kind), kept as interned steps are (see
// InternSteps). o.Steps must be nil: the caller never held the steps, so
// it cannot write into them, and no copy of them is made only to be
// dropped for the shared plan.
func (tx *Tx) PutOperationPlanned(o *Operation, plan []Step) {
	if o.Steps != nil {
		panic("state: PutOperationPlanned with steps of its own")
	}
	tx.putOperation(o, o.cloneWith(plan))
}

// RequestOperation returns the operation id a request_id already produced.
func (tx *Tx) RequestOperation(requestID string) (string, bool) {
	if id, ok := tx.requests[requestID]; ok {
		return id, true
	}
	id, ok := tx.s.requests[requestID]
	return id, ok
}

// PutRequest records that requestID produced operation opID.
func (tx *Tx) PutRequest(requestID, opID string) { tx.requests[requestID] = opID }

// Host returns a mutable copy of a host; Put it to keep changes.
func (tx *Tx) Host(id string) (*Host, bool) {
	if h, ok := tx.hosts[id]; ok {
		if h == nil {
			return nil, false // removed in this entry
		}
		return h.clone(), true
	}
	h, ok := tx.s.hosts[id]
	if !ok {
		return nil, false
	}
	return h.clone(), true
}

// RemoveHost stages the removal of a host's record.
func (tx *Tx) RemoveHost(id string) { tx.hosts[id] = nil }

// PutHost stages a copy of a host.
func (tx *Tx) PutHost(h *Host) { tx.hosts[h.ID] = h.clone() }

// InstancesOnHost returns mutable copies of the instances placed on a host.
func (tx *Tx) InstancesOnHost(hostID string) []*Instance {
	var out []*Instance
	seen := map[string]bool{}
	for id, i := range tx.instances {
		seen[id] = true
		if i.HostID == hostID {
			out = append(out, i.clone())
		}
	}
	for id := range tx.s.placed.onHost[hostID] {
		if !seen[id] {
			out = append(out, tx.s.instances[id].clone())
		}
	}
	return out
}

// Server returns a registry entry.
func (tx *Tx) Server(id string) (Server, bool) {
	if v, ok := tx.servers[id]; ok {
		if v == nil {
			return Server{}, false
		}
		return *v, true
	}
	v, ok := tx.s.servers[id]
	return v, ok
}

// PutServer stages a registry entry.
func (tx *Tx) PutServer(v Server) { tx.servers[v.ID] = &v }

// DeleteServer stages the removal of a registry entry.
func (tx *Tx) DeleteServer(id string) { tx.servers[id] = nil }

// HostLoad is what the live instances on a host take, staged changes
// included, computed from the load the store keeps (O(staged), not
// O(instances on the host)).
func (tx *Tx) HostLoad(hostID string) HostLoad {
	out := HostLoad{Groups: map[string]int{}, Preemptible: map[string]Instance{}}
	if l, ok := tx.s.placed.load[hostID]; ok {
		out.Allocated = l.Allocated
		for g, n := range l.Groups {
			out.Groups[g] = n
		}
		for id, i := range l.Preemptible {
			out.Preemptible[id] = i
		}
	}
	for id, staged := range tx.instances {
		if old := tx.s.instances[id]; counts(old) {
			if r, ok := old.RoomOn(hostID); ok {
				out.add(old, r, -1)
			}
		}
		if counts(staged) {
			if r, ok := staged.RoomOn(hostID); ok {
				out.add(staged, r, +1)
			}
		}
	}
	// The committed (and staged) records stay unreachable: the caller's own.
	for id, i := range out.Preemptible {
		out.Preemptible[id] = *i.clone()
	}
	return out
}
