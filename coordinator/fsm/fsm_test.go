package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	store *state.Store
	fsm   *FSM
	now   time.Time
	// record, if set, is given every entry applied.
	record func([]byte)
}

func newHarness(t *testing.T) *harness {
	s := state.New(0)
	return &harness{t: t, store: s, fsm: New(s, nil), now: t0}
}

func (h *harness) apply(typ string, body any) Result {
	h.t.Helper()
	h.now = h.now.Add(time.Second)
	b, err := Encode(typ, h.now, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.record != nil {
		h.record(b)
	}
	return h.fsm.ApplyBytes(b)
}

func (h *harness) mustApply(typ string, body any) any {
	h.t.Helper()
	r := h.apply(typ, body)
	if r.Err != nil {
		h.t.Fatalf("%s: %v", typ, r.Err)
	}
	return r.Value
}

// report sends the operation's current step to its host if it is not
// running yet, then reports its result as that host's agent would.
func (h *harness) report(f Finish) Result {
	h.t.Helper()
	op, err := h.store.Operation(f.OperationID)
	if err != nil {
		h.t.Fatal(err)
	}
	st := op.Current()
	if st == nil {
		h.t.Fatalf("operation %s has no step left: %+v", op.ID, op)
	}
	if st.State != state.StepRunning {
		host, _ := h.store.Host(op.StepHost(st))
		h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: op.ID, StepID: op.StepID(op.Cur, st.Attempt+1), HostEpoch: host.Epoch}}})
		op, _ = h.store.Operation(f.OperationID)
		st = op.Current()
	}
	f.StepID = op.StepID(op.Cur, st.Attempt)
	if f.HostID == "" {
		f.HostID = op.StepHost(st)
	}
	return h.apply(TypeFinish, f)
}

func (h *harness) mustReport(f Finish) {
	h.t.Helper()
	if r := h.report(f); r.Err != nil {
		h.t.Fatalf("finish %s: %v", f.OperationID, r.Err)
	}
}

func (h *harness) register(host string, vcpus uint32, mem uint64, inv ...Observation) uint64 {
	h.t.Helper()
	return h.mustApply(TypeRegisterHost, RegisterHost{Host: state.Host{ID: host, Kind: "fake", Capacity: state.Resources{VCPUs: vcpus, MemoryMiB: mem}}, Inventory: inv}).(uint64)
}

func (h *harness) create(id, host string, vcpus uint32, mem uint64, requestID string) Result {
	h.t.Helper()
	return h.apply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: id, Name: id, HostID: host, Spec: state.Spec{VCPUs: vcpus, MemoryMiB: mem, Image: "img"}},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id, RequestID: requestID, Deadline: h.now.Add(time.Minute)},
	})
}

func (h *harness) status(id string) lifecycle.Status {
	h.t.Helper()
	i, err := h.store.Instance(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return i.Status()
}

func TestCreateDispatchFinish(t *testing.T) {
	h := newHarness(t)
	epoch := h.register("h1", 4, 4096)
	if r := h.create("i1", "h1", 1, 512, "req-1"); r.Err != nil || r.Value != "op-i1" {
		t.Fatalf("create: %+v", r)
	}
	if got := h.status("i1"); got != lifecycle.StatusCreating {
		t.Fatalf("after create: %s", got)
	}
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-i1", StepID: "op-i1/0/1", HostEpoch: epoch}}})
	op, _ := h.store.Operation("op-i1")
	if op.State != state.OpRunning || op.StartTime.IsZero() || op.HostEpoch != epoch {
		t.Fatalf("dispatched op: %+v", op)
	}
	h.preflighted("op-i1")
	h.mustReport(Finish{OperationID: "op-i1", Succeeded: true, HostID: "h1", Observed: &Observation{InstanceID: "i1", Power: lifecycle.PowerRunning, Time: h.now}})
	if got := h.status("i1"); got != lifecycle.StatusRunning {
		t.Fatalf("after finish: %s", got)
	}
	// A retry of the same request returns the same operation and changes nothing.
	rev := h.store.Revision()
	if r := h.create("i1-retry", "h1", 1, 512, "req-1"); r.Err != nil || r.Value != "op-i1" {
		t.Fatalf("retried create: %+v", r)
	}
	if h.store.Revision() != rev {
		t.Fatal("a deduplicated request changed the state")
	}
	// A late second result cannot reopen the operation.
	if r := h.apply(TypeFinish, Finish{OperationID: "op-i1", Succeeded: false, HostID: "h1"}); !errors.Is(r.Err, ErrOperationDone) {
		t.Fatalf("late finish: %v", r.Err)
	}
}

func TestCapacityCheckedAtCommit(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 2, 1024)
	if r := h.create("a", "h1", 1, 512, ""); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := h.create("b", "h1", 1, 512, ""); r.Err != nil {
		t.Fatal(r.Err)
	}
	rev := h.store.Revision()
	if r := h.create("c", "h1", 1, 1, ""); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("third create on a full host: %v", r.Err)
	}
	if r := h.create("d", "nohost", 1, 1, ""); !errors.Is(r.Err, ErrHostUnavailable) {
		t.Fatalf("create on unknown host: %v", r.Err)
	}
	if h.store.Revision() != rev {
		t.Fatal("a refused create changed the state")
	}
}

func TestActionRules(t *testing.T) {
	h := newHarness(t)
	epoch := h.register("h1", 4, 4096)
	h.create("i1", "h1", 1, 512, "")
	act := func(a lifecycle.Action, opID string) Result {
		return h.apply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: "i1", Deadline: h.now.Add(time.Minute)}})
	}
	// While creating, nothing else is allowed; the refusal lists what is.
	r := act(lifecycle.ActionPause, "op-x")
	var nae *lifecycle.NotAllowedError
	if !errors.As(r.Err, &nae) || nae.Status != lifecycle.StatusCreating || len(nae.Allowed) != 0 {
		t.Fatalf("pause while creating: %v", r.Err)
	}
	h.finishAll("op-i1")
	if r := act(lifecycle.ActionPause, "op-p"); r.Err != nil {
		t.Fatal(r.Err)
	}
	i, _ := h.store.Instance("i1")
	if i.Desired != lifecycle.DesiredPaused || h.status("i1") != lifecycle.StatusPausing {
		t.Fatalf("after pause accepted: %+v %s", i, h.status("i1"))
	}
	h.mustApply(TypeDispatch, Dispatch{Steps: []DispatchStep{{OperationID: "op-p", StepID: "op-p/0/1", HostEpoch: epoch}}})
	h.mustReport(Finish{OperationID: "op-p", Succeeded: false, HostID: "h1", Fault: &state.Fault{Code: "HYPERVISOR_ERROR", Message: "boom"}})
	if h.status("i1") != lifecycle.StatusError {
		t.Fatalf("after failed pause: %s", h.status("i1"))
	}
	op, _ := h.store.Operation("op-p")
	if op.State != state.OpFailed || op.Fault == nil || op.Fault.Code != "HYPERVISOR_ERROR" {
		t.Fatalf("failed op: %+v", op)
	}
	if r := act(lifecycle.ActionStart, "op-s"); r.Err != nil {
		t.Fatalf("start from ERROR: %v", r.Err)
	}
	if r := h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-n", InstanceID: "missing"}}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("action on missing instance: %v", r.Err)
	}
}

func TestCancelBeforeDispatch(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("a", "h1", 1, 512, "")
	h.mustApply(TypeCancel, Cancel{OperationID: "op-a"})
	op, _ := h.store.Operation("op-a")
	if op.State != state.OpCanceled || op.Fault == nil || op.Steps[0].State != state.StepSkipped {
		t.Fatalf("canceled op: %+v", op)
	}
	i, _ := h.store.Instance("a")
	if i.Result != lifecycle.ResultCanceled || i.CurrentOp != "" || i.Status() != lifecycle.StatusDeleted {
		t.Fatalf("instance after cancel: %+v (%s)", i, i.Status())
	}
}

func TestObservationsSpeakOnlyForOwnHost(t *testing.T) {
	h := newHarness(t)
	e1 := h.register("h1", 4, 4096)
	e2 := h.register("h2", 4, 4096)
	h.create("i1", "h1", 1, 512, "")
	h.finishAll("op-i1")

	// h2 claims i1 is shut off: ignored, and i1 is listed as an orphan of h2.
	h.mustApply(TypeObserve, Observe{HostID: "h2", Epoch: e2, Full: true, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerShutOff, Time: h.now}}})
	if h.status("i1") != lifecycle.StatusRunning {
		t.Fatalf("another host's report changed i1: %s", h.status("i1"))
	}
	if host, _ := h.store.Host("h2"); len(host.Orphans) != 1 || host.Orphans[0] != "i1" {
		t.Fatalf("orphans of h2: %v", host.Orphans)
	}
	// h1 reports the shut-off: an unexpected shutoff, desired state untouched.
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: e1, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerShutOff, Reason: "destroyed", Time: h.now}}})
	i, _ := h.store.Instance("i1")
	if i.Status() != lifecycle.StatusUnexpectedShutoff || i.Desired != lifecycle.DesiredRunning || i.PowerWhy != "destroyed" {
		t.Fatalf("after shut-off: %s %+v", i.Status(), i)
	}
	// An older report does not overwrite a newer one.
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: e1, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerRunning, Time: t0}}})
	if h.status("i1") != lifecycle.StatusUnexpectedShutoff {
		t.Fatal("a stale observation overwrote a newer one")
	}
	// A superseded session cannot report.
	if r := h.apply(TypeObserve, Observe{HostID: "h1", Epoch: e1 - 1}); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("stale epoch: %v", r.Err)
	}
	// A full resync that lacks the domain means it is gone.
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: e1, Full: true})
	if i, _ := h.store.Instance("i1"); i.Power != lifecycle.PowerNoDomain || i.Status() != lifecycle.StatusError {
		t.Fatalf("after resync without the domain: %+v", i)
	}
}

func TestDisconnectMakesPowerUnknown(t *testing.T) {
	h := newHarness(t)
	e := h.register("h1", 4, 4096)
	h.create("i1", "h1", 1, 512, "")
	h.finishAll("op-i1")
	if r := h.apply(TypeDisconnectHost, DisconnectHost{HostID: "h1", Epoch: e + 1}); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("disconnect of a newer epoch: %v", r.Err)
	}
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h1", Epoch: e})
	i, _ := h.store.Instance("i1")
	if i.Status() != lifecycle.StatusUnknown || i.Desired != lifecycle.DesiredRunning {
		t.Fatalf("after disconnect: %s %+v", i.Status(), i)
	}
	// The agent comes back with the VM still running: RUNNING again, no operation.
	e2 := h.register("h1", 4, 4096, Observation{InstanceID: "i1", Power: lifecycle.PowerRunning, Time: h.now.Add(time.Second)})
	if e2 != e+1 || h.status("i1") != lifecycle.StatusRunning {
		t.Fatalf("after re-register: epoch %d status %s", e2, h.status("i1"))
	}
}

func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("i1", "h1", 1, 512, "req")
	h.create("i2", "h1", 1, 512, "")
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	rev := h.store.Revision()
	a, _ := h.store.Instances()
	// Raft persists a snapshot while the FSM goes on applying: what is
	// applied after Snapshot returned is not in it.
	h.create("i3", "h1", 1, 512, "req3")
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v (closed %v)", err, sink.closed)
	}
	h2 := newHarness(t)
	if err := h2.store.Restore(&sink.buf); err != nil {
		t.Fatal(err)
	}
	if h2.store.Revision() != rev {
		t.Fatalf("revision %d, want %d", h2.store.Revision(), rev)
	}
	if _, ok := h2.store.OperationByRequest("req3"); ok {
		t.Fatal("a create applied after the snapshot was taken is in it")
	}
	b, _ := h2.store.Instances()
	if len(a) != len(b) || !reflect.DeepEqual(a, b) {
		t.Fatalf("instances differ:\n%+v\n%+v", a, b)
	}
	if op, ok := h2.store.OperationByRequest("req"); !ok || op.ID != "op-i1" {
		t.Fatal("request ids lost in the snapshot")
	}
	ev, _, _, err := h2.store.Since(0)
	if err != nil || len(ev) != 2 {
		t.Fatalf("watch history after restore: %d events, %v", len(ev), err)
	}
}

// TestSnapshotIsEncodedWhileEntriesApply encodes views of the state over
// and over while creates, steps and user actions apply: a committed record
// changed in place instead of replaced would be a data race (go test -race),
// and an encoded view must stay the state at the revision it was taken.
func TestSnapshotIsEncodedWhileEntriesApply(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 64, 1<<20)
	stop := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			v := h.store.View()
			var buf bytes.Buffer
			if err := v.Write(&buf); err != nil {
				errs <- err
				return
			}
			r := state.New(0)
			if err := r.Restore(&buf); err != nil || r.Revision() != v.Revision() {
				errs <- fmt.Errorf("restored view: revision %d of %d, %v", r.Revision(), v.Revision(), err)
				return
			}
		}
	}()
	for n := 0; n < 40; n++ {
		id := fmt.Sprintf("i%d", n)
		h.create(id, "h1", 1, 512, "req-"+id)
		h.finishAll("op-" + id)
		stopID := "op-stop-" + id
		h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: stopID, InstanceID: id, Deadline: h.now.Add(time.Minute)}})
		h.running(stopID)
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if got := h.status("i39"); got != lifecycle.StatusStopped {
		t.Fatalf("i39 is %s after its stop", got)
	}
}

func TestUndecodableBodyPanics(t *testing.T) {
	h := newHarness(t)
	defer func() {
		if recover() == nil {
			t.Fatal("an undecodable entry must panic, not diverge")
		}
	}()
	h.fsm.ApplyBytes([]byte(`{"type":"instance.create","body":"not an object"}`))
}

func TestBatchAppliesEachOnItsOwn(t *testing.T) {
	h := newHarness(t)
	e := h.register("h1", 4, 4096)
	h.create("i1", "h1", 1, 64, "")
	h.finishAll("op-i1")
	enc := func(typ string, body any) []byte {
		b, err := Encode(typ, h.now, body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry, err := EncodeBatch(h.now, [][]byte{
		enc(TypeObserve, Observe{HostID: "h1", Epoch: e, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerPaused, Time: h.now}}}),
		enc(TypeFinish, Finish{OperationID: "op-missing", HostID: "h1"}), // refused
		enc(TypeObserve, Observe{HostID: "h1", Epoch: e, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerRunning, Reason: "unpaused", Time: h.now.Add(time.Second)}}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	before := h.store.Revision()
	res := h.fsm.ApplyBytes(entry).Value.([]Result)
	if len(res) != 3 || res[0].Err != nil || !errors.Is(res[1].Err, ErrNotFound) || res[2].Err != nil {
		t.Fatalf("batch results: %+v", res)
	}
	if i, _ := h.store.Instance("i1"); i.Power != lifecycle.PowerRunning || i.PowerWhy != "unpaused" {
		t.Fatalf("after the batch: %+v", i)
	}
	if got := h.store.Revision() - before; got != 2 {
		t.Fatalf("the batch made %d revisions, want 2 (one per applied change)", got)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	buf              bytes.Buffer
	closed, canceled bool
}

func (m *memSink) Write(p []byte) (int, error) { return m.buf.Write(p) }
func (m *memSink) Close() error                { m.closed = true; return nil }
func (m *memSink) ID() string                  { return "mem" }
func (m *memSink) Cancel() error               { m.canceled = true; return nil }
