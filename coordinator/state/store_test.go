package state

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"

	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func put(t *testing.T, s *Store, id string) {
	t.Helper()
	if err := s.Update(time.Now(), func(tx *Tx) error {
		tx.PutInstance(&Instance{ID: id})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryAndCompaction(t *testing.T) {
	s := New(3)
	for i := 0; i < 5; i++ {
		put(t, s, fmt.Sprint("i", i))
	}
	if s.Revision() != 5 {
		t.Fatalf("revision %d", s.Revision())
	}
	ev, _, _, err := s.Since(2)
	if err != nil || len(ev) != 3 || ev[0].Revision != 3 || ev[2].Revision != 5 {
		t.Fatalf("since 2: %+v %v", ev, err)
	}
	if _, _, _, err := s.Since(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("since 1 after compaction: %v", err)
	}
	ev, ch, _, err := s.Since(5)
	if err != nil || len(ev) != 0 {
		t.Fatalf("since head: %v %v", ev, err)
	}
	put(t, s, "late")
	select {
	case <-ch:
	default:
		t.Fatal("watch channel not closed by a change")
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	s := New(0)
	put(t, s, "a")
	boom := errors.New("boom")
	err := s.Update(time.Now(), func(tx *Tx) error {
		tx.PutInstance(&Instance{ID: "b"})
		return boom
	})
	if !errors.Is(err, boom) || s.Revision() != 1 {
		t.Fatalf("err %v rev %d", err, s.Revision())
	}
	if _, err := s.Instance("b"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a failed update leaked a record")
	}
}

func TestWaitRevision(t *testing.T) {
	s := New(0)
	done := make(chan error, 1)
	go func() { done <- s.WaitRevision(context.Background(), 2) }()
	put(t, s, "a")
	put(t, s, "b")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitRevision(ctx, 99); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a future revision: %v", err)
	}
}

// A change channel that nobody was given is kept across commits; one that
// was given out is closed by the next commit, and the next Changed is new.
func TestChangedWakesEveryWaiter(t *testing.T) {
	s := New(0)
	put(t, s, "a")
	put(t, s, "b") // no waiter in between: nothing to wake
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any change after it was handed out")
	default:
	}
	put(t, s, "c")
	select {
	case <-ch:
	default:
		t.Fatal("a commit did not close the channel a waiter held")
	}
	next := s.Changed()
	select {
	case <-next:
		t.Fatal("the channel after a commit is already closed")
	default:
	}
	if err := s.Update(time.Now(), func(tx *Tx) error { return errors.New("refused") }); err == nil {
		t.Fatal("refused update succeeded")
	}
	put(t, s, "d")
	select {
	case <-next:
	default:
		t.Fatal("a later commit did not close the channel handed out before it")
	}
}

func TestCommitOrderIsDeterministic(t *testing.T) {
	now := time.Unix(1700000000, 0)
	apply := func(order []string) string {
		s := New(0)
		if err := s.Update(now, func(tx *Tx) error {
			for _, id := range order {
				tx.PutInstance(&Instance{ID: id})
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		d, _ := s.Digest()
		return d
	}
	if a, b := apply([]string{"a", "b", "c"}), apply([]string{"c", "a", "b"}); a != b {
		t.Fatalf("same changes put in another order give another state: %s vs %s", a, b)
	}
}

func TestHostLoadFollowsEveryChange(t *testing.T) {
	s := New(0)
	spec := Spec{VCPUs: 2, MemoryMiB: 512, DiskGiB: 10}
	put := func(i Instance) {
		if err := s.Update(time.Now(), func(tx *Tx) error { tx.PutInstance(&i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	put(Instance{ID: "a", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Group: "db"}})
	put(Instance{ID: "b", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Preemptible: true}})
	put(Instance{ID: "c", Spec: spec, Desired: lifecycle.DesiredRunning}) // waiting: no host
	if got := s.Allocated()["h1"]; got != (Resources{4, 1024, 20}) {
		t.Fatalf("h1 after two: %+v", got)
	}
	// b moves to h2, a is deleted, c is placed on h2.
	put(Instance{ID: "b", HostID: "h2", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Preemptible: true}})
	put(Instance{ID: "a", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain, Placement: Placement{Group: "db"}})
	put(Instance{ID: "c", HostID: "h2", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning})
	alloc := s.Allocated()
	if alloc["h1"] != (Resources{}) || alloc["h2"] != (Resources{4, 1024, 20}) {
		t.Fatalf("after moves: %+v", alloc)
	}
	s.mu.RLock()
	h1, h2 := s.placed.load["h1"], s.placed.load["h2"]
	s.mu.RUnlock()
	if len(h1.Groups) != 0 || len(h1.Preemptible) != 0 || len(h2.Preemptible) != 1 {
		t.Fatalf("groups/preemptibles: h1 %+v h2 %+v", h1, h2)
	}
	// A restored replica rebuilds the same loads.
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(0)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := r.Allocated(); got["h2"] != alloc["h2"] || got["h1"] != alloc["h1"] {
		t.Fatalf("restored loads %+v, want %+v", got, alloc)
	}
}

func TestWaitingIndex(t *testing.T) {
	s := New(0)
	now := time.Now()
	update := func(fn func(tx *Tx)) int64 {
		t.Helper()
		if err := s.Update(now, func(tx *Tx) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
		return s.Revision()
	}
	wait := func(id string, preemptible bool) int64 {
		return update(func(tx *Tx) {
			tx.PutInstance(&Instance{ID: id, Desired: lifecycle.DesiredRunning, CurrentOp: "op-" + id, CurrentOpK: lifecycle.OpCreate,
				Spec: Spec{VCPUs: 1}, Placement: Placement{Preemptible: preemptible}})
			tx.PutOperation(&Operation{ID: "op-" + id, InstanceID: id, Kind: lifecycle.OpCreate, State: OpPending})
		})
	}
	ids := func(insts []Instance) (out []string) {
		for _, i := range insts {
			out = append(out, i.ID)
		}
		return out
	}
	check := func(since int64, wantAll bool, want ...string) int64 {
		t.Helper()
		got, all, rev := s.Waiting(since)
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) || all != wantAll || rev != s.Revision() {
			t.Fatalf("Waiting(%d) = %v all=%v rev %d; want %v all=%v rev %d", since, ids(got), all, rev, want, wantAll, s.Revision())
		}
		return rev
	}
	wait("spot", true)
	wait("a", false)
	seen := check(0, false, "a", "spot") // normal first, then preemptible, each oldest first
	seen = check(seen, false)
	wait("b", false)
	seen = check(seen, false, "b") // only the newcomer
	// a is placed: it no longer waits, and nothing was freed.
	seen = update(func(tx *Tx) {
		i, _ := tx.Instance("a")
		i.HostID = "h1"
		tx.PutInstance(i)
		o, _ := tx.Operation("op-a")
		o.HostID = "h1"
		tx.PutOperation(o)
	})
	check(seen, false)
	if hosted := s.HostedOperations(); len(hosted) != 1 || hosted[0].ID != "op-a" {
		t.Fatalf("hosted: %+v", hosted)
	}
	// a is deleted: its room is free, so all waiting instances are due.
	rev := update(func(tx *Tx) {
		i, _ := tx.Instance("a")
		i.Desired, i.Power, i.CurrentOp, i.CurrentOpK = lifecycle.DesiredDeleted, lifecycle.PowerNoDomain, "", lifecycle.OpNone
		tx.PutInstance(i)
		o, _ := tx.Operation("op-a")
		o.State = OpSucceeded
		tx.PutOperation(o)
	})
	seen = check(seen, true, "b", "spot")
	if seen != rev || len(s.HostedOperations()) != 0 {
		t.Fatalf("after the delete: rev %d, hosted %+v", seen, s.HostedOperations())
	}
	// A host changing makes them due again; so does a restore.
	update(func(tx *Tx) { tx.PutHost(&Host{ID: "h2", Status: HostReady}) })
	seen = check(seen, true, "b", "spot")
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	check(seen-1, true, "b", "spot")
	// Many arrivals that end keep the arrival log short.
	for n := range 3000 {
		id := fmt.Sprint("w", n)
		wait(id, false)
		update(func(tx *Tx) {
			o, _ := tx.Operation("op-" + id)
			o.State = OpCanceled
			tx.PutOperation(o)
		})
	}
	if s.mu.RLock(); len(s.waiting.arrivals) > 2*len(s.waiting.ops)+1024 {
		t.Fatalf("arrival log of %d for %d waiting", len(s.waiting.arrivals), len(s.waiting.ops))
	}
	s.mu.RUnlock()
}

func TestStoppedUnexpectedlyIndex(t *testing.T) {
	s := New(0)
	list := func() (out []string) {
		s.EachStoppedUnexpectedly(func(i *Instance) { out = append(out, i.ID) })
		return out
	}
	off := Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerShutOff, Result: lifecycle.ResultSucceeded}
	if err := s.Update(time.Now(), func(tx *Tx) error { tx.PutInstance(&off); return nil }); err != nil {
		t.Fatal(err)
	}
	put(t, s, "b")
	if got := list(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("stopped: %v", got)
	}
	off.CurrentOp, off.CurrentOpK = "op-1", lifecycle.OpStart // being restarted
	if err := s.Update(time.Now(), func(tx *Tx) error { tx.PutInstance(&off); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("restarting: %v", got)
	}
}

// The history shares committed records; its snapshot encoding is still
// that of []Event.
func TestHistorySnapshotFormat(t *testing.T) {
	s := New(0)
	for _, id := range []string{"a", "b"} {
		if err := s.Update(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), func(tx *Tx) error {
			tx.PutInstance(&Instance{ID: id})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	var snap struct {
		History []Event `json:"history"`
	}
	if err := json.Unmarshal(buf.Bytes(), &snap); err != nil {
		t.Fatal(err)
	}
	ev, _, _, err := s.Since(0)
	if err != nil || !reflect.DeepEqual(snap.History, ev) || len(ev) != 2 || ev[1].Instance.ID != "b" || ev[1].Revision != 2 {
		t.Fatalf("snapshot history %+v, watch history %+v (%v)", snap.History, ev, err)
	}
	// A watcher's copy is its own.
	ev[0].Instance.Name = "changed"
	if i, _ := s.Instance("a"); i.Name != "" {
		t.Fatal("a watcher changed a committed record")
	}
}

func TestFreesRoom(t *testing.T) {
	placed := Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Spec: Spec{VCPUs: 2}}
	with := func(change func(*Instance)) *Instance {
		i := placed
		change(&i)
		return &i
	}
	for name, c := range map[string]struct {
		old, now *Instance
		want     bool
	}{
		"new waiting":       {nil, with(func(i *Instance) { i.HostID = "" }), false},
		"placed":            {with(func(i *Instance) { i.HostID = "" }), &placed, false},
		"power change":      {&placed, with(func(i *Instance) { i.Power = lifecycle.PowerPaused }), false},
		"deleted":           {&placed, with(func(i *Instance) { i.Desired, i.Power = lifecycle.DesiredDeleted, lifecycle.PowerNoDomain }), true},
		"moved":             {&placed, with(func(i *Instance) { i.HostID = "h2" }), true},
		"resized":           {&placed, with(func(i *Instance) { i.Spec.VCPUs = 1 }), true},
		"move target ended": {with(func(i *Instance) { i.MoveTarget = "h2" }), &placed, true},
		"preemptible idle":  {with(func(i *Instance) { i.Placement.Preemptible, i.CurrentOp = true, "op" }), with(func(i *Instance) { i.Placement.Preemptible = true }), true},
	} {
		if got := freesRoom(c.old, c.now); got != c.want {
			t.Errorf("%s: freesRoom = %v, want %v", name, got, c.want)
		}
	}
}

// TestViewWritesTheSnapshotEncoding: the view is written record by record,
// and must come out exactly as encoding/json encodes the snapshot struct
// Restore decodes, so that a field added to the struct and not to the
// writer fails here rather than vanish from snapshots.
func TestViewWritesTheSnapshotEncoding(t *testing.T) {
	s := New(0)
	check := func(what string) {
		t.Helper()
		v := s.View()
		var got bytes.Buffer
		if err := v.Write(&got); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(&v.snap); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: streamed snapshot differs from encoding/json:\n%s\n%s", what, got.Bytes(), want.Bytes())
		}
		// And it reads back record by record as encoding/json decodes it.
		var whole Snapshot
		if err := json.Unmarshal(got.Bytes(), &whole); err != nil {
			t.Fatal(err)
		}
		streamed, err := readSnapshot(bytes.NewReader(got.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*streamed, whole) {
			t.Fatalf("%s: read back as\n%+v\nwant\n%+v", what, *streamed, whole)
		}
	}
	check("empty store")
	now := time.Date(2026, 11, 23, 1, 2, 3, 4, time.UTC)
	err := s.Update(now, func(tx *Tx) error {
		tx.StartMetering()
		tx.PutHost(&Host{ID: "h1", Status: HostReady, Labels: map[string]string{"zone": "a", "disk": "ssd"}, Orphans: []string{"x"}})
		for _, id := range []string{"b", "a", "c"} {
			tx.PutInstance(&Instance{ID: id, Name: id + "<&>\u2028", HostID: "h1", Spec: Spec{VCPUs: 1, MemoryMiB: 64},
				Placement: Placement{Labels: map[string]string{"z": "1", "a": "2"}}, Fault: &Fault{Code: "C", Time: now}})
			tx.PutOperation(&Operation{ID: "op-" + id, InstanceID: id, RequestID: "req-" + id,
				Steps: []Step{{Name: "create", Undo: &Step{Name: "destroy"}}, {Name: "start"}}})
			tx.PutRequest("req-"+id, "op-"+id)
		}
		tx.PutServer(Server{ID: "c2", RaftAddr: "r2", APIAddr: "a2"})
		tx.PutServer(Server{ID: "c1", RaftAddr: "r1", APIAddr: "a1"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An instance that flapped long enough for its usage to be folded, and
	// an operation with its requester.
	for n := range 2*usage.MaxChanges + 3 {
		power := lifecycle.PowerRunning
		if n%2 == 1 {
			power = lifecycle.PowerShutOff
		}
		if err := s.Update(now.Add(time.Duration(n)*time.Minute), func(tx *Tx) error {
			tx.PutInstance(&Instance{ID: "flap", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: power})
			tx.PutOperation(&Operation{ID: "op-flap", InstanceID: "flap", RequestedBy: &Caller{Name: "alice", Roles: []string{"operator"}, Authenticated: true, Address: "127.0.0.1:1"}})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if h, _, _ := s.Usage("flap"); len(h.Meters) == 0 || h.Meters[0].Folded == nil {
		t.Fatalf("the flapping instance's usage was not folded: %+v", h)
	}
	check("populated store")
}

// Usage is recorded at commit, with the entry's time, for every instance
// an entry writes, and a snapshot carries it to a restored replica.
func TestUsageRecordedAtCommitAndRestored(t *testing.T) {
	s := New(0)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Update(t0, func(tx *Tx) error { tx.StartMetering(); return nil }); err != nil {
		t.Fatal(err)
	}
	put := func(sec int, i Instance) {
		t.Helper()
		if err := s.Update(t0.Add(time.Duration(sec)*time.Second), func(tx *Tx) error { tx.PutInstance(&i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	running := Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning}
	stopped := Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredStopped, Power: lifecycle.PowerShutOff}
	deleted := Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain}
	put(0, running)
	put(30, Instance{ID: "a", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Name: "renamed"}) // same facts
	put(100, stopped)
	put(400, deleted)
	put(500, Instance{ID: "other", Desired: lifecycle.DesiredRunning})
	sum := func(s *Store, v vocabulary.Vocabulary) map[vocabulary.Billing]time.Duration {
		t.Helper()
		h, _, err := s.Usage("a")
		if err != nil {
			t.Fatal(err)
		}
		m, ok := h.Meter(v)
		if !ok {
			t.Fatalf("no %s meter: %+v", v, h)
		}
		got, err := m.Sum(t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := map[vocabulary.Billing]time.Duration{vocabulary.BillingHardwareAndSoftware: 100 * time.Second, vocabulary.BillingHardwareOnly: 300 * time.Second}
	if got := sum(s, vocabulary.Azure); !maps.Equal(got, want) {
		t.Fatalf("azure usage %v, want %v", got, want)
	}
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(0)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := sum(r, vocabulary.Azure); !maps.Equal(got, want) {
		t.Fatalf("restored azure usage %v, want %v", got, want)
	}
	if a, b := digest(s), digest(r); a != b {
		t.Fatalf("restored digest %s, want %s", b, a)
	}
	if _, _, err := s.Usage("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("usage of an unknown instance: %v", err)
	}
}

func digest(s *Store) string {
	d, _ := s.Digest()
	return d
}

// Removing a deleted instance forgets it, its operations, their request
// ids and its usage, under a revision of its own.
func TestRemoveInstanceForgetsEverything(t *testing.T) {
	s := New(0)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	update := func(at time.Time, fn func(tx *Tx)) {
		t.Helper()
		if err := s.Update(at, func(tx *Tx) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	update(t0, func(tx *Tx) { tx.StartMetering() })
	for _, id := range []string{"gone", "kept"} {
		update(t0, func(tx *Tx) {
			tx.PutInstance(&Instance{ID: id, HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning})
			tx.PutOperation(&Operation{ID: "op-" + id, InstanceID: id, RequestID: "req-" + id, State: OpSucceeded})
			tx.PutRequest("req-"+id, "op-"+id)
		})
	}
	update(t0.Add(time.Minute), func(tx *Tx) {
		tx.PutInstance(&Instance{ID: "gone", HostID: "h1", Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain})
	})
	if got := s.DeletedBefore(t0, 10); len(got) != 0 {
		t.Fatalf("deleted before its deletion: %v", got)
	}
	if got := s.DeletedBefore(t0.Add(time.Minute), 10); !slices.Equal(got, []string{"gone"}) {
		t.Fatalf("deleted by then: %v", got)
	}
	rev := s.Revision()
	update(t0.Add(time.Hour), func(tx *Tx) { tx.RemoveInstance("gone") })
	if s.Revision() != rev+1 {
		t.Fatalf("a removal did not commit a revision: %d -> %d", rev, s.Revision())
	}
	if _, err := s.Instance("gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("instance: %v", err)
	}
	if _, err := s.Operation("op-gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("operation: %v", err)
	}
	if ops, _ := s.Operations("gone"); len(ops) != 0 {
		t.Fatalf("operations: %v", ops)
	}
	if _, ok := s.OperationByRequest("req-gone"); ok {
		t.Fatal("its request id still answers")
	}
	if _, _, err := s.Usage("gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("usage: %v", err)
	}
	if got := s.DeletedBefore(t0.Add(time.Hour), 10); len(got) != 0 {
		t.Fatalf("still listed as deleted: %v", got)
	}
	if _, ok := s.OperationByRequest("req-kept"); !ok {
		t.Fatal("the other instance's request id was forgotten")
	}
	if h, _, err := s.Usage("kept"); err != nil || len(h.Meters) != 2 {
		t.Fatalf("the other instance's usage: %+v %v", h, err)
	}
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(0)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if digest(r) != digest(s) {
		t.Fatal("a restored replica differs after a removal")
	}
}

// A snapshot with a field this version does not know still restores; a
// cut-off one does not.
func TestReadSnapshotSkipsUnknownFieldsAndRefusesTruncation(t *testing.T) {
	doc := `{"version":1,"revision":7,"future":{"a":[1,2,{"b":null}]},"instances":[{"id":"a"}],"operations":null,"requests":{"r":"op"},"history":[]}`
	snap, err := readSnapshot(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Revision != 7 || len(snap.Instances) != 1 || snap.Instances[0].ID != "a" || snap.Ops != nil || snap.Requests["r"] != "op" || snap.History == nil {
		t.Fatalf("read %+v", snap)
	}
	for _, cut := range []int{1, 40, len(doc) - 1} {
		if _, err := readSnapshot(strings.NewReader(doc[:cut])); err == nil {
			t.Errorf("a snapshot cut at %d bytes was read", cut)
		}
	}
}
