package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// local applies commands straight to an FSM, as a single-node log would.
type local struct {
	f     *fsm.FSM
	calls map[string]int // command type -> proposals
}

func (l *local) Apply(_ context.Context, cmd []byte) (any, error) {
	typ, err := fsm.TypeOf(cmd)
	if err != nil {
		return nil, err
	}
	l.calls[typ]++
	r := l.f.ApplyBytes(cmd)
	return r.Value, r.Err
}

// noSessions has no agent connected: nothing is ever dispatched.
type noSessions struct{}

func (noSessions) Epoch(string) (uint64, bool)            { return 0, false }
func (noSessions) Send(string, *agentv1.RunStep) error    { return nil }
func (noSessions) Query(string, *agentv1.QueryStep) error { return nil }
func (noSessions) Changed() <-chan struct{}               { return nil }

type placeHarness struct {
	t     *testing.T
	store *state.Store
	l     *local
	o     *Orchestrator
	now   time.Time
}

func newPlaceHarness(t *testing.T) *placeHarness {
	s := state.New(0)
	h := &placeHarness{t: t, store: s, l: &local{f: fsm.New(s, nil), calls: map[string]int{}}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	h.o = New(Config{Store: s, Applier: h.l, Sessions: noSessions{}, Now: func() time.Time { return h.now }})
	h.o.sent, h.o.evicting, h.o.retryWaiting = map[string]uint64{}, map[string][]string{}, true
	return h
}

func (h *placeHarness) apply(typ string, body any) any {
	h.t.Helper()
	h.now = h.now.Add(time.Second)
	v, err := fsm.Propose(context.Background(), h.l, typ, h.now, body)
	if err != nil {
		h.t.Fatalf("%s: %v", typ, err)
	}
	return v
}

func (h *placeHarness) register(id string, vcpus uint32) {
	h.apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: id, Kind: "fake", Capacity: state.Resources{VCPUs: vcpus, MemoryMiB: 1 << 20, DiskGiB: 1 << 20}}})
}

// done runs an operation's current step to success, as its agent would.
func (h *placeHarness) done(opID string) {
	h.t.Helper()
	for {
		op, err := h.store.Operation(opID)
		if err != nil {
			h.t.Fatal(err)
		}
		st := op.Current()
		if op.State.Done() || st == nil {
			return
		}
		host, _ := h.store.Host(op.StepHost(st))
		id := op.StepID(op.Cur, st.Attempt+1)
		h.apply(fsm.TypeDispatch, fsm.Dispatch{Steps: []fsm.DispatchStep{{OperationID: opID, StepID: id, HostEpoch: host.Epoch}}})
		h.apply(fsm.TypeFinish, fsm.Finish{OperationID: opID, StepID: id, Succeeded: true, HostID: host.ID})
	}
}

// wait creates an instance of one vCPU that waits for capacity.
func (h *placeHarness) wait(id string) {
	h.apply(fsm.TypeCreateInstance, fsm.CreateInstance{
		Instance:  state.Instance{ID: id, Name: id, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id},
	})
}

func (h *placeHarness) host(id string) string {
	h.t.Helper()
	i, err := h.store.Instance(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return i.HostID
}

// pass runs one orchestrator pass and returns how many placements it proposed.
func (h *placeHarness) pass() int {
	before := h.l.calls[fsm.TypePlace]
	h.o.pass(context.Background())
	return h.l.calls[fsm.TypePlace] - before
}

func TestWaitingPlacedWhenRoomAppears(t *testing.T) {
	h := newPlaceHarness(t)
	h.wait("a")
	h.wait("b")
	if n := h.pass(); n != 0 || h.host("a") != "" {
		t.Fatalf("no host: %d placements, a on %q", n, h.host("a"))
	}
	// A host with room for one registers: the oldest is placed.
	h.register("h1", 1)
	if n := h.pass(); n != 1 || h.host("a") != "h1" || h.host("b") != "" {
		t.Fatalf("after h1: %d placements, a on %q, b on %q", n, h.host("a"), h.host("b"))
	}
	// Nothing changed that could make room: b is not tried again, and a
	// new arrival is tried once.
	h.wait("c")
	if n := h.pass(); n != 0 || h.host("c") != "" {
		t.Fatalf("nothing freed: %d placements, c on %q", n, h.host("c"))
	}
	// a's create ends and a is deleted: its room goes to b, the oldest waiting.
	h.done("op-a")
	h.apply(fsm.TypeInstanceAction, fsm.InstanceAction{Action: lifecycle.ActionDelete, Operation: state.Operation{ID: "op-del-a", InstanceID: "a"}})
	if n := h.pass(); n != 0 {
		t.Fatalf("a not yet gone: %d placements", n)
	}
	h.done("op-del-a")
	if n := h.pass(); n != 1 || h.host("b") != "h1" || h.host("c") != "" {
		t.Fatalf("after a's delete: %d placements, b on %q, c on %q", n, h.host("b"), h.host("c"))
	}
	// A second host: c, waiting since before it, is placed.
	h.register("h2", 4)
	if n := h.pass(); n != 1 || h.host("c") != "h2" {
		t.Fatalf("after h2: %d placements, c on %q", n, h.host("c"))
	}
	// A newcomer that waits although h2 has room (the API's view was
	// stale) is placed on arrival.
	h.wait("d")
	if n := h.pass(); n != 1 || h.host("d") != "h2" {
		t.Fatalf("arrival with room: %d placements, d on %q", n, h.host("d"))
	}
	if n := h.pass(); n != 0 {
		t.Fatalf("idle pass: %d placements", n)
	}
}

func TestWaitingPlacedWhenHostUncordoned(t *testing.T) {
	h := newPlaceHarness(t)
	h.register("h1", 4)
	h.apply(fsm.TypeCordonHost, fsm.CordonHost{HostID: "h1", Cordon: true})
	h.wait("a")
	if n := h.pass(); n != 0 {
		t.Fatalf("cordoned: %d placements", n)
	}
	h.apply(fsm.TypeCordonHost, fsm.CordonHost{HostID: "h1", Cordon: false})
	if n := h.pass(); n != 1 || h.host("a") != "h1" {
		t.Fatalf("uncordoned: %d placements, a on %q", n, h.host("a"))
	}
}
