package state

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// Sentinel errors returned by reads and by Tx users.
var (
	ErrNotFound  = errors.New("not found")
	ErrCompacted = errors.New("revision compacted")
)

// DefaultHistory is how many instance changes are kept for watchers.
const DefaultHistory = 50000

// Store holds the state. The zero value is not usable; call New.
type Store struct {
	mu        sync.RWMutex
	rev       int64
	seq       int64
	instances map[string]*Instance
	ops       map[string]*Operation
	requests  map[string]string // request_id -> op id
	hosts     map[string]*Host
	servers   map[string]Server
	networks  map[string]*Network
	projects  map[string]*Project
	images    map[string]*Image
	usage     map[string]*usage.History // instance id -> its billing-class history
	metering  bool                      // usage is recorded (since a usage.start entry)
	// The indexes (see declareIndexes).
	byInst  opsByInstance
	hosted  hostedOps
	waiting waitQueue
	stopped instanceSet // instances recovery may have to act on
	deleted instanceSet // DELETED instances (retention removes them)
	booting instanceSet // instances whose guest is booting (readiness deadlines)
	// confirmable: instances with a resize that has a confirm window
	// (the leader confirms those past it)
	confirmable instanceSet
	placed      placement
	order       hostOrder   // host ids by position, for sampling
	addrs       addressBook // who holds which address, MAC and host name
	projUse     projectUse  // what each project's instances take
	indexes     []index
	// logVersion is the cluster's log version (fsm.SetLogVersion); 0 is
	// the first, of every state older than the command. Atomic: every
	// proposal reads it, and must not wait for the apply holding mu.
	logVersion atomic.Uint32
	history    []change // oldest first, at most limit
	floor      int64    // every instance change after this revision is in history
	limit      int
	changed    chan struct{}                                  // closed on the next commit once handed out (see notify)
	handedOut  atomic.Bool                                    // changed was handed to a reader since it was made
	tx         Tx                                             // the transaction of the entry being applied, reused
	intern     func(lifecycle.OpKind, []Step) []Step          // see InternSteps
	opEnded    func(lifecycle.OpKind, OpState, time.Duration) // see OnOperationEnd
}

// OnOperationEnd installs fn, told of every operation that ends (succeeds,
// fails or is canceled) at a commit this store applies, with its kind, how
// it ended, and how long it took from acceptance to its end: metrics count
// operations with it. It is called under the store's write lock, so fn
// must be quick and must not call back into the store. Operations loaded
// from a snapshot are not told of. Install it before the store applies
// anything.
func (s *Store) OnOperationEnd(fn func(kind lifecycle.OpKind, end OpState, took time.Duration)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opEnded = fn
}

// InternSteps installs fn, asked of every operation as it is put (to be
// committed) or loaded, with its kind and steps, for an equal array that it
// shares with others (the plan of its kind, while the operation has not
// begun), or nil. (Given the kind and steps, not the operation: a pointer
// passed to a function value escapes, and the fsm's creates keep theirs on
// the stack.) The store then keeps that array instead of a copy of the steps.
// Stored records are never written, every read copies them, so sharing is
// safe whether or not fn shares anything; it only saves memory (and, at
// Put, the copy of the steps).
func (s *Store) InternSteps(fn func(lifecycle.OpKind, []Step) []Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intern = fn
}

// internedClone is o's clone, with its steps interned if they can be.
func (s *Store) internedClone(o *Operation) *Operation {
	if s.intern != nil {
		if shared := s.intern(o.Kind, o.Steps); shared != nil {
			return o.cloneWith(shared)
		}
	}
	return o.clone()
}

// New returns an empty store that keeps limit instance changes for watchers.
func New(limit int) *Store {
	if limit <= 0 {
		limit = DefaultHistory
	}
	s := &Store{limit: limit, changed: make(chan struct{})}
	s.declareIndexes()
	s.reset(0)
	return s
}

// reset empties the store, for a state at revision rev.
func (s *Store) reset(rev int64) {
	s.rev, s.seq = rev, 0
	s.instances = map[string]*Instance{}
	s.ops = map[string]*Operation{}
	s.requests = map[string]string{}
	s.hosts = map[string]*Host{}
	s.servers = map[string]Server{}
	s.networks = map[string]*Network{}
	s.projects = map[string]*Project{}
	s.images = map[string]*Image{}
	s.usage = map[string]*usage.History{}
	s.metering = false
	s.logVersion.Store(0)
	s.history = nil
	s.floor = 0
	for _, x := range s.indexes {
		x.reset(rev)
	}
}

// Revision is the revision of the last change.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Changed returns a channel closed at the next change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changedLocked()
}

// changedLocked hands out the channel the next commit closes; the caller
// holds s.mu (read or write).
func (s *Store) changedLocked() <-chan struct{} {
	s.handedOut.Store(true)
	return s.changed
}

// notify wakes whoever waits for a change; the caller holds s.mu for
// writing. A channel nobody was given is kept for the next change: most
// commits (every command of a batch entry) have no new waiter, and a new
// channel each was a tenth of what applying a create allocated.
func (s *Store) notify() {
	if s.handedOut.Load() {
		close(s.changed)
		s.changed = make(chan struct{})
		s.handedOut.Store(false)
	}
}

// WaitRevision blocks until the store has reached rev or ctx ends.
func (s *Store) WaitRevision(ctx context.Context, rev int64) error {
	for {
		s.mu.RLock()
		cur, ch := s.rev, s.changedLocked()
		s.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for revision %d (at %d): %w", rev, cur, ctx.Err())
		}
	}
}

// Instance returns a copy of one instance.
func (s *Store) Instance(id string) (Instance, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.instances[id]
	if !ok {
		return Instance{}, fmt.Errorf("instance %q: %w", id, ErrNotFound)
	}
	return *i.clone(), nil
}

// Usage returns an instance's billing-class history (shared: read it,
// never change it) and the revision it reflects. An instance with none
// (recording has not started, or it was deleted before it did) has an
// empty one.
func (s *Store) Usage(id string) (usage.History, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.instances[id]; !ok {
		return usage.History{}, s.rev, fmt.Errorf("instance %q: %w", id, ErrNotFound)
	}
	if h := s.usage[id]; h != nil {
		return *h, s.rev, nil
	}
	return usage.History{InstanceID: id}, s.rev, nil
}

// LogVersion is the cluster's log version (0: the first).
func (s *Store) LogVersion() uint32 { return s.logVersion.Load() }

// Metering reports whether usage is being recorded: from the log entry
// that started it on (see Tx.StartMetering).
func (s *Store) Metering() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.metering
}

// meterLocked records the billing classes of instance i, committed at now,
// if its facts changed since old (or it has no history yet). It runs for
// every instance every commit writes, so no apply function can forget it,
// and with the entry's time, so every replica records the same history.
func (s *Store) meterLocked(old, i *Instance, now time.Time) {
	if !s.metering {
		return
	}
	h := s.usage[i.ID]
	if h != nil && old != nil && old.Facts() == i.Facts() && old.LastOpK == i.LastOpK {
		return
	}
	if next, changed := usage.Observe(h, i.ID, now, vocabulary.Input{Facts: i.Facts(), LastOp: i.LastOpK}); changed {
		s.usage[i.ID] = next
	}
}

// DeletedBefore returns the ids, sorted, of at most limit DELETED
// instances whose record last changed (when they were deleted) at or
// before cutoff: those a retention of the history may remove.
func (s *Store) DeletedBefore(cutoff time.Time, limit int) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id := range s.deleted.ids {
		if !s.instances[id].UpdateTime.After(cutoff) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// removeLocked forgets an instance and everything recorded about it: its
// operations, the request ids that produced them, its usage history.
func (s *Store) removeLocked(id string) {
	i, ok := s.instances[id]
	if !ok {
		return
	}
	for _, opID := range s.byInst.ids[id] {
		o := s.ops[opID]
		if k := RequestKeyOf(o); k != "" && s.requests[k] == opID {
			delete(s.requests, k)
		}
		delete(s.ops, opID)
		s.indexOperation(o, nil, s.rev)
	}
	delete(s.instances, id)
	s.indexInstance(i, nil, s.rev)
	delete(s.usage, id)
}

// Instances returns copies of all instances ordered by id, and the revision they reflect.
func (s *Store) Instances() ([]Instance, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Instance, 0, len(s.instances))
	for _, i := range s.instances {
		out = append(out, *i.clone())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, s.rev
}

// InstancesPage returns copies of the first limit instances, by id, after
// the id after for which keep holds, whether more follow, and the revision
// they reflect. keep runs under the read lock on the stored record, which
// it must neither keep nor change. Only the page is copied and sorted, so
// paging through 100,000 instances costs one pass over ids per page rather
// than a copy of every record per page.
func (s *Store) InstancesPage(after string, limit int, keep func(*Instance) bool) (page []Instance, more bool, rev int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// The limit+1 smallest ids, as a max-heap on id: its root is the
	// largest kept, the one a smaller id replaces.
	h := make(idHeap, 0, limit+1)
	for id, i := range s.instances {
		if id <= after || (len(h) == limit+1 && id >= h[0].ID) || !keep(i) {
			continue
		}
		if len(h) < limit+1 {
			heap.Push(&h, i)
		} else {
			h[0] = i
			heap.Fix(&h, 0)
		}
	}
	sort.Slice(h, func(a, b int) bool { return h[a].ID < h[b].ID })
	more = len(h) > limit
	if more {
		h = h[:limit]
	}
	page = make([]Instance, len(h))
	for k, i := range h {
		page[k] = *i.clone()
	}
	return page, more, s.rev
}

// idHeap is a max-heap of instances by id.
type idHeap []*Instance

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(a, b int) bool { return h[a].ID > h[b].ID }
func (h idHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(*Instance)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Operation returns a copy of one operation.
func (s *Store) Operation(id string) (Operation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.ops[id]
	if !ok {
		return Operation{}, fmt.Errorf("operation %q: %w", id, ErrNotFound)
	}
	return *o.clone(), nil
}

// Operations returns copies of operations, newest first, optionally only
// those of one instance, and the revision they reflect.
func (s *Store) Operations(instanceID string) ([]Operation, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Operation
	if instanceID != "" {
		for _, id := range s.byInst.ids[instanceID] {
			out = append(out, *s.ops[id].clone())
		}
	} else {
		out = make([]Operation, 0, len(s.ops))
		for _, o := range s.ops {
			out = append(out, *o.clone())
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq > out[b].Seq })
	return out, s.rev
}

// OpenOperations returns copies of every operation not yet done, oldest
// first. It reads every operation (no index is kept for it): the leader's
// loops use HostedOperations and Waiting instead.
func (s *Store) OpenOperations() []Operation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Operation
	for _, o := range s.ops {
		if !o.State.Done() {
			out = append(out, *o.clone())
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out
}

// Host returns a copy of one host.
func (s *Store) Host(id string) (Host, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.hosts[id]
	if !ok {
		return Host{}, fmt.Errorf("host %q: %w", id, ErrNotFound)
	}
	return *h.clone(), nil
}

// Hosts returns copies of all hosts ordered by id, and the revision they reflect.
func (s *Store) Hosts() ([]Host, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Host, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, *h.clone())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, s.rev
}

// Allocated sums the specs of the live instances placed on each host.
func (s *Store) Allocated() map[string]Resources {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]Resources, len(s.placed.load))
	for id, l := range s.placed.load {
		out[id] = l.Allocated
	}
	return out
}

// OperationByRequest returns the operation a request_id produced, if any.
func (s *Store) OperationByRequest(requestID string) (Operation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.requests[requestID]
	if !ok {
		return Operation{}, false
	}
	return *s.ops[id].clone(), true
}

// Since returns the instance changes after rev, a channel closed at the next
// change, and the current revision. ErrCompacted means rev is older than the
// history holds.
func (s *Store) Since(rev int64) ([]Event, <-chan struct{}, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if rev < s.floor {
		return nil, nil, s.rev, fmt.Errorf("revision %d is older than the oldest kept (%d): %w", rev, s.floor, ErrCompacted)
	}
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].Revision > rev })
	out := make([]Event, len(s.history)-i)
	for j, c := range s.history[i:] {
		out[j] = Event{Revision: c.Revision, Instance: *c.Instance.clone()}
	}
	return out, s.changedLocked(), s.rev, nil
}

// Change is one instance change of the history, shared with the store:
// Instance is the committed record itself, which is replaced by later
// commits, never changed. Read it; do not change it.
type Change struct {
	Revision int64
	Instance *Instance
}

// Changes is Since for watchers replaying history: it returns at most
// about max changes after rev (all of the last revision's, so a revision
// is never split), sharing the records instead of copying them, and more
// when the history holds later ones. A watcher that pages through the
// history this way holds one page of pointers, not a copy of the history:
// under the store's read lock it costs 16 bytes per change returned.
func (s *Store) Changes(rev int64, max int) (out []Change, changed <-chan struct{}, more bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if rev < s.floor {
		return nil, nil, false, fmt.Errorf("revision %d is older than the oldest kept (%d): %w", rev, s.floor, ErrCompacted)
	}
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].Revision > rev })
	end := min(len(s.history), i+max)
	for end < len(s.history) && end > i && s.history[end].Revision == s.history[end-1].Revision {
		end++
	}
	out = make([]Change, end-i)
	for j, c := range s.history[i:end] {
		out[j] = Change(c)
	}
	return out, s.changedLocked(), end < len(s.history), nil
}

// change is one entry of the history: an instance record as committed at
// a revision. Committed records are replaced, never changed, so the entry
// shares the record with the store rather than copying it (a copy per
// commit cost more than the rest of keeping the history). Its JSON is
// that of an Event, which the snapshot format keeps.
type change struct {
	Revision int64
	Instance *Instance
}

func sortOpsBySeq(ops []*Operation) {
	sort.Slice(ops, func(a, b int) bool { return ops[a].Seq < ops[b].Seq })
}

// Servers returns the coordinator registry ordered by id.
func (s *Store) Servers() []Server {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Server, 0, len(s.servers))
	for _, v := range s.servers {
		out = append(out, v)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// EachInstance calls fn for every instance under the read lock, without
// copying (placement and the leader's loops read every instance often).
// fn must neither keep nor change the record, nor call back into the store.
func (s *Store) EachInstance(fn func(*Instance)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, i := range s.instances {
		fn(i)
	}
}

// EachHost is EachInstance for hosts.
func (s *Store) EachHost(fn func(*Host)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, h := range s.hosts {
		fn(h)
	}
}

// HostLoad is what the live instances placed on a host take, kept up to
// date at every commit so placement costs O(hosts), not O(instances).
type HostLoad struct {
	Allocated   Resources
	Groups      map[string]int      // anti-affinity group -> instances
	Preemptible map[string]Instance // preemptible instances by id
}

func (l *HostLoad) add(i *Instance, r Spec, sign int) {
	l.Allocated.VCPUs = uint32(int64(l.Allocated.VCPUs) + int64(sign)*int64(r.VCPUs))
	l.Allocated.MemoryMiB = uint64(int64(l.Allocated.MemoryMiB) + int64(sign)*int64(r.MemoryMiB))
	l.Allocated.DiskGiB = uint64(int64(l.Allocated.DiskGiB) + int64(sign)*int64(r.DiskGiB))
	if g := i.Placement.Group; g != "" {
		if l.Groups[g] += sign; l.Groups[g] == 0 {
			delete(l.Groups, g)
		}
	}
	if i.Placement.Preemptible {
		if sign > 0 {
			l.Preemptible[i.ID] = *i
		} else {
			delete(l.Preemptible, i.ID)
		}
	}
}

// room is what an instance takes on one host.
type room struct {
	host string
	spec Spec
}

// takesRoom lists the hosts an instance takes room on, and how much: its
// own; while it moves, the target too (so nothing else is placed in the
// room it needs); while a resize is unconfirmed, the original's host at the
// original's shape, or, in place, the larger of both shapes.
func (i *Instance) takesRoom() []room {
	own := room{i.HostID, i.Spec}
	r := i.Resize
	switch {
	case i.MoveTarget != "" && i.MoveTarget != i.HostID:
		other := i.Spec
		if r != nil {
			other = r.To // a resize to another host: the target holds the new shape
		}
		return []room{own, {i.MoveTarget, other}}
	case r != nil && r.Source != i.HostID:
		return []room{own, {r.Source, r.From}}
	case r != nil:
		own.spec = maxSpec(r.From, r.To)
	}
	return []room{own}
}

func maxSpec(a, b Spec) Spec {
	return Spec{VCPUs: max(a.VCPUs, b.VCPUs), MemoryMiB: max(a.MemoryMiB, b.MemoryMiB), DiskGiB: max(a.DiskGiB, b.DiskGiB), Image: a.Image}
}

// RoomOn returns what the instance takes on host h, if anything.
func (i *Instance) RoomOn(h string) (Spec, bool) {
	for _, r := range i.takesRoom() {
		if r.host == h {
			return r.spec, true
		}
	}
	return Spec{}, false
}

// counts reports whether an instance takes room on its host.
func counts(i *Instance) bool {
	if i == nil || i.HostID == "" {
		return false
	}
	// A deallocated instance keeps its disk's host (HostID) and no room.
	s := i.Status()
	return s != lifecycle.StatusDeleted && s != lifecycle.StatusDeallocated
}

// EachHostLoad calls fn for every host with its load, under the read lock;
// fn must neither keep nor change them.
func (s *Store) EachHostLoad(fn func(*Host, *HostLoad)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	empty := &HostLoad{}
	for id, h := range s.hosts {
		if l, ok := s.placed.load[id]; ok {
			fn(h, l)
		} else {
			fn(h, empty)
		}
	}
}

// SampleHostLoads calls fn for k hosts drawn with pick (which returns an
// integer in [0, n)) and for the hosts also that exist, each with its
// load, under one read lock; for k at least the number of hosts, for every
// host. A host drawn or named twice is passed once. It costs O(k) whatever
// the fleet's size: what the placement of one create reads. fn must
// neither keep nor change what it is given.
func (s *Store) SampleHostLoads(k int, pick func(n int) int, also []string, fn func(*Host, *HostLoad)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	empty := &HostLoad{}
	seen := make(map[string]bool, k+len(also))
	visit := func(id string) {
		h, ok := s.hosts[id]
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		if l, ok := s.placed.load[id]; ok {
			fn(h, l)
		} else {
			fn(h, empty)
		}
	}
	ids := s.order.ids
	if k >= len(ids) {
		for _, id := range ids {
			visit(id)
		}
		return
	}
	for range k {
		visit(ids[pick(len(ids))])
	}
	for _, id := range also {
		visit(id)
	}
}

// AnyHostOpen reports whether some host is READY and not cordoned: the
// first such host ends the search.
func (s *Store) AnyHostOpen() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, h := range s.hosts {
		if h.Status == HostReady && !h.Cordoned {
			return true
		}
	}
	return false
}

// hostOrder keeps the host ids in a slice, for drawing one at random.
type hostOrder struct {
	ignores
	ids []string
	pos map[string]int
}

func (o *hostOrder) reset(int64) { o.ids, o.pos = nil, map[string]int{} }

func (o *hostOrder) host(old, now *Host, _ int64) {
	switch {
	case old == nil && now != nil:
		o.pos[now.ID] = len(o.ids)
		o.ids = append(o.ids, now.ID)
	case old != nil && now == nil:
		i, ok := o.pos[old.ID]
		if !ok {
			return
		}
		last := len(o.ids) - 1
		o.ids[i] = o.ids[last]
		o.pos[o.ids[i]] = i
		o.ids = o.ids[:last]
		delete(o.pos, old.ID)
	}
}

// placement holds where instances are placed and what they take there.
type placement struct {
	ignores
	onHost map[string]map[string]bool // host id -> ids of instances placed there
	load   map[string]*HostLoad       // host id -> what its live instances take
}

func (p *placement) reset(int64) {
	p.onHost, p.load = map[string]map[string]bool{}, map[string]*HostLoad{}
}

func (p *placement) instance(old, now *Instance, _ int64) {
	if counts(old) {
		for _, r := range old.takesRoom() {
			p.load[r.host].add(old, r.spec, -1)
		}
	}
	if counts(now) {
		for _, r := range now.takesRoom() {
			l, ok := p.load[r.host]
			if !ok {
				l = &HostLoad{Groups: map[string]int{}, Preemptible: map[string]Instance{}}
				p.load[r.host] = l
			}
			l.add(now, r.spec, +1)
		}
	}
	if old != nil && old.HostID != "" && (now == nil || now.HostID != old.HostID) {
		delete(p.onHost[old.HostID], old.ID)
	}
	if now != nil && now.HostID != "" {
		if p.onHost[now.HostID] == nil {
			p.onHost[now.HostID] = map[string]bool{}
		}
		p.onHost[now.HostID][now.ID] = true
	}
}

// EachChange calls scan with the time, then again after every change (at
// most once per coalesce: a burst of commits costs one scan) or once the
// wait scan returned has passed, until ctx ends. It serves the leader's
// loops that act on what the state shows (recovery, readiness deadlines).
func (s *Store) EachChange(ctx context.Context, coalesce time.Duration, scan func(now time.Time) (next time.Duration)) {
	for ctx.Err() == nil {
		changed := s.Changed()
		next := scan(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-changed:
			select {
			case <-ctx.Done():
				return
			case <-time.After(coalesce):
			}
		case <-time.After(next):
		}
	}
}
