package fsm

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// at makes the harness's next entry be stamped t0+sec.
func (h *harness) at(sec int) { h.now = t0.Add(time.Duration(sec-1) * time.Second) }

// finishAt reports the operation's step done at sec (dispatched at sec-1),
// with the power state the host saw after it.
func (h *harness) finishAt(sec int, opID, host string, power lifecycle.Power, inst string) {
	h.t.Helper()
	for op := h.op(opID); op.Cur < len(op.Steps)-1; op = h.op(opID) {
		h.mustReport(Finish{OperationID: opID, Succeeded: true, HostID: host}) // a preflight: nothing changes
	}
	h.at(sec - 1)
	h.mustReport(Finish{OperationID: opID, Succeeded: true, HostID: host, Observed: &Observation{InstanceID: inst, Power: power, Time: t0.Add(time.Duration(sec) * time.Second)}})
}

func (h *harness) action(sec int, a lifecycle.Action, opID, inst string) {
	h.t.Helper()
	h.at(sec)
	h.mustApply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: inst, Deadline: h.now.Add(time.Hour)}})
}

type billed map[vocabulary.Billing]time.Duration

func seconds(kv ...any) billed {
	out := billed{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(vocabulary.Billing)] = time.Duration(kv[i+1].(int)) * time.Second
	}
	return out
}

func usageOf(t *testing.T, s *state.Store, id string, v vocabulary.Vocabulary, from, to int) billed {
	t.Helper()
	h, _, err := s.Usage(id)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := h.Meter(v)
	if !ok {
		t.Fatalf("%s has no %s meter: %+v", id, v, h)
	}
	got, err := m.Sum(t0.Add(time.Duration(from)*time.Second), t0.Add(time.Duration(to)*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestUsageFollowsTheLog applies a known life (create, run, stop, delete)
// with controlled entry times and checks the seconds billed per class in
// both metered vocabularies; a replica applying the same entries, and one
// restored from a snapshot, answer the same.
func TestUsageFollowsTheLog(t *testing.T) {
	h := newHarness(t)
	var entries [][]byte
	h.record = func(e []byte) { entries = append(entries, e) }
	h.mustApply(TypeStartUsage, StartUsage{})
	h.register("h1", 4, 4096)
	h.at(10)
	if r := h.create("i1", "h1", 1, 512, ""); r.Err != nil { // CREATING from 10
		t.Fatal(r.Err)
	}
	h.finishAt(101, "op-i1", "h1", lifecycle.PowerRunning, "i1")    // RUNNING from 101
	h.action(300, lifecycle.ActionStop, "op-stop", "i1")            // STOPPING from 300
	h.finishAt(401, "op-stop", "h1", lifecycle.PowerShutOff, "i1")  // STOPPED from 401
	h.action(1000, lifecycle.ActionDelete, "op-del", "i1")          // DELETING from 1000
	h.finishAt(1101, "op-del", "h1", lifecycle.PowerNoDomain, "i1") // DELETED at 1101
	if st := h.status("i1"); st != lifecycle.StatusDeleted {
		t.Fatalf("status %s", st)
	}

	want := map[vocabulary.Vocabulary]billed{
		// RightScale: pending, operational, stopping/stopped (storage only),
		// shutting-down (the seed names no class: unclassified).
		vocabulary.RightScale: seconds(vocabulary.BillingNotCharged, 91, vocabulary.BillingInstanceUsage, 199,
			vocabulary.BillingStorageOnly, 700, vocabulary.BillingNone, 101),
		// Azure: starting, running and stopping (hardware and software),
		// stopped, and while deleting what the host reports (stopped).
		vocabulary.Azure: seconds(vocabulary.BillingNotBilled, 91, vocabulary.BillingHardwareAndSoftware, 300,
			vocabulary.BillingHardwareOnly, 700),
	}
	clipped := map[vocabulary.Vocabulary]billed{ // 200..450
		vocabulary.RightScale: seconds(vocabulary.BillingInstanceUsage, 100, vocabulary.BillingStorageOnly, 150),
		vocabulary.Azure:      seconds(vocabulary.BillingHardwareAndSoftware, 201, vocabulary.BillingHardwareOnly, 49),
	}
	check := func(what string, s *state.Store) {
		t.Helper()
		for v, w := range want {
			// Long after the deletion: a deleted instance accrues nothing.
			if got := usageOf(t, s, "i1", v, 0, 100000); !maps.Equal(got, w) {
				t.Errorf("%s: %s usage %v, want %v", what, v, got, w)
			}
			if got := usageOf(t, s, "i1", v, 200, 450); !maps.Equal(got, clipped[v]) {
				t.Errorf("%s: %s usage 200..450 %v, want %v", what, v, got, clipped[v])
			}
		}
	}
	check("applied", h.store)

	replica := newHarness(t)
	for _, e := range entries {
		replica.fsm.ApplyBytes(e)
	}
	check("replica", replica.store)
	d1, r1 := h.store.Digest()
	d2, r2 := replica.store.Digest()
	if d1 != d2 || r1 != r2 {
		t.Fatalf("replica at rev %d digest %s, leader at rev %d digest %s", r2, d2, r1, d1)
	}

	var buf bytes.Buffer
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.(*snapshot).view.Write(&buf); err != nil {
		t.Fatal(err)
	}
	restored := newHarness(t)
	if err := restored.fsm.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	check("restored", restored.store)
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// An entry stamped earlier than the one before (a new leader whose clock
// is behind) never makes usage run backwards.
func TestUsageNeverRunsBackwards(t *testing.T) {
	h := newHarness(t)
	h.mustApply(TypeStartUsage, StartUsage{})
	h.register("h1", 4, 4096)
	h.at(100)
	h.create("i1", "h1", 1, 512, "")                               // CREATING from 100
	h.finishAt(50, "op-i1", "h1", lifecycle.PowerRunning, "i1")    // stamped 50: counts as 100
	h.action(200, lifecycle.ActionStop, "op-stop", "i1")           // STOPPING from 200
	h.finishAt(300, "op-stop", "h1", lifecycle.PowerShutOff, "i1") // STOPPED from 300
	got := usageOf(t, h.store, "i1", vocabulary.Azure, 0, 400)
	want := seconds(vocabulary.BillingHardwareAndSoftware, 200, vocabulary.BillingHardwareOnly, 100)
	if !maps.Equal(got, want) {
		t.Fatalf("usage %v, want %v", got, want)
	}
}

func TestPruneRemovesOnlyExpiredDeletedInstances(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	// gone: never placed (no host), deleted at once at 100.
	h.at(50)
	h.mustApply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: "gone", Name: "gone", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-gone", InstanceID: "gone", RequestID: "req-gone"},
	})
	h.at(100)
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, Operation: state.Operation{ID: "op-gone-del", InstanceID: "gone", RequestID: "req-gone-del"}})
	if st := h.status("gone"); st != lifecycle.StatusDeleted {
		t.Fatalf("gone is %s", st)
	}
	h.at(120)
	h.create("live", "h1", 1, 512, "req-live")

	// Not yet: deleted after the cut-off.
	rev := h.store.Revision()
	if got := h.mustApply(TypePrune, Prune{Before: t0.Add(99 * time.Second), InstanceIDs: []string{"gone"}}); len(got.([]string)) != 0 {
		t.Fatalf("pruned before the retention passed: %v", got)
	}
	if h.store.Revision() != rev {
		t.Fatal("a prune that removed nothing changed the state")
	}
	// Now: only the deleted instance goes, once, whatever else the leader listed.
	got := h.mustApply(TypePrune, Prune{Before: t0.Add(100 * time.Second), InstanceIDs: []string{"gone", "gone", "live", "missing"}})
	if !slices.Equal(got.([]string), []string{"gone"}) {
		t.Fatalf("pruned %v", got)
	}
	if _, err := h.store.Instance("gone"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("gone is still there: %v", err)
	}
	for _, op := range []string{"op-gone", "op-gone-del"} {
		if _, err := h.store.Operation(op); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("%s is still there: %v", op, err)
		}
	}
	if _, ok := h.store.OperationByRequest("req-gone"); ok {
		t.Fatal("a pruned operation's request id still answers")
	}
	if _, err := h.store.Instance("live"); err != nil {
		t.Fatal(err)
	}
	if ops, _ := h.store.Operations("live"); len(ops) != 1 {
		t.Fatalf("live's operations: %+v", ops)
	}
	// A create retried with the pruned request id is a new create.
	h.at(200)
	if r := h.create("again", "h1", 1, 512, "req-gone"); r.Err != nil || r.Value != "op-again" {
		t.Fatalf("create reusing a pruned request id: %+v", r)
	}
}

// Usage is recorded from the usage.start entry on, not from whenever the
// code that applies the log learned to: replicas that replay entries
// written before it from different snapshots (as after an upgrade) agree,
// and every instance's history begins at that entry.
func TestUsageStartsAtItsEntry(t *testing.T) {
	h := newHarness(t)
	var entries [][]byte
	h.record = func(e []byte) { entries = append(entries, e) }
	h.register("h1", 4, 4096)
	h.at(10)
	h.create("i1", "h1", 1, 512, "")
	h.finishAt(101, "op-i1", "h1", lifecycle.PowerRunning, "i1") // entries 2..4
	snapAt := len(entries)
	h.action(300, lifecycle.ActionStop, "op-stop", "i1")
	h.at(350)
	if on := h.mustApply(TypeStartUsage, StartUsage{}); on != true {
		t.Fatalf("usage.start: %v", on)
	}
	if on := h.mustApply(TypeStartUsage, StartUsage{}); on != false {
		t.Fatalf("a second usage.start: %v", on)
	}
	h.finishAt(401, "op-stop", "h1", lifecycle.PowerShutOff, "i1")

	// Since 350: stopping, then stopped from 401.
	want := seconds(vocabulary.BillingHardwareAndSoftware, 51, vocabulary.BillingHardwareOnly, 599)
	if got := usageOf(t, h.store, "i1", vocabulary.Azure, 0, 1000); !maps.Equal(got, want) {
		t.Fatalf("azure usage %v, want %v", got, want)
	}
	if hist, _, _ := h.store.Usage("i1"); hist.Meters[0].Start() != t0.Add(350*time.Second) {
		t.Fatalf("metering began %v", hist.Meters[0].Start())
	}

	// A replica that replays everything, and one restored from a snapshot
	// taken before the usage.start entry (like one of a version without
	// usage), end up the same.
	full := newHarness(t)
	for _, e := range entries {
		full.fsm.ApplyBytes(e)
	}
	early := newHarness(t)
	for _, e := range entries[:snapAt] {
		early.fsm.ApplyBytes(e)
	}
	var buf bytes.Buffer
	if err := early.store.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	restored := newHarness(t)
	if err := restored.store.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries[snapAt:] {
		restored.fsm.ApplyBytes(e)
	}
	d, _ := h.store.Digest()
	for name, r := range map[string]*harness{"full replay": full, "restored before usage.start": restored} {
		if got, _ := r.store.Digest(); got != d {
			t.Errorf("%s: digest %s, want %s", name, got, d)
		}
	}
}
