package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func (h *harness) createWith(id, host string, vcpus uint32, p state.Placement, policy scheduler.Policy) Result {
	h.t.Helper()
	return h.apply(TypeCreateInstance, CreateInstance{
		Policy:    policy,
		Instance:  state.Instance{ID: id, Name: id, HostID: host, Spec: state.Spec{VCPUs: vcpus, MemoryMiB: 64, Image: "img"}, Placement: p},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)},
	})
}

func TestCommitTimePlacementRules(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 2, 4096)
	db := state.Placement{Group: "db"}
	if r := h.createWith("a", "h1", 1, db, scheduler.Policy{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := h.createWith("b", "h1", 1, db, scheduler.Policy{}); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("a second instance of an anti-affinity group on one host: %v", r.Err)
	}
	// Overcommit travels with the command: 2 physical vCPUs hold 4 at 2.0.
	for _, id := range []string{"c", "d", "e"} {
		if r := h.createWith(id, "h1", 1, state.Placement{}, scheduler.Policy{CPUOvercommit: 2}); r.Err != nil {
			t.Fatalf("%s at 2.0 overcommit: %v", id, r.Err)
		}
	}
	if r := h.createWith("f", "h1", 1, state.Placement{}, scheduler.Policy{CPUOvercommit: 2}); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("fifth vCPU at 2.0 overcommit on 2 CPUs: %v", r.Err)
	}
	if r := h.createWith("g", "h1", 1, state.Placement{Kind: "xen"}, scheduler.Policy{CPUOvercommit: 8}); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("a xen instance on a fake host: %v", r.Err)
	}
	h.mustApply(TypeCordonHost, CordonHost{HostID: "h1", Cordon: true})
	if r := h.createWith("h", "h1", 1, state.Placement{}, scheduler.Policy{CPUOvercommit: 8}); !errors.Is(r.Err, ErrHostUnavailable) {
		t.Fatalf("create on a cordoned host: %v", r.Err)
	}
}

func TestDrainStopsWhatRuns(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 8, 4096)
	for _, id := range []string{"run", "busy", "off"} {
		h.create(id, "h1", 1, 64, "")
	}
	h.finishAll("op-run")
	h.finishAll("op-off")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-stop-off", InstanceID: "off", Deadline: h.now.Add(time.Minute)}})
	h.mustReport(Finish{OperationID: "op-stop-off", Succeeded: true, HostID: "h1"})

	v := h.mustApply(TypeDrainHost, DrainHost{HostID: "h1", Stops: []state.Operation{
		{ID: "d1", InstanceID: "run"}, {ID: "d2", InstanceID: "busy"}, {ID: "d3", InstanceID: "off"},
	}})
	if started := v.([]string); len(started) != 1 || started[0] != "d1" {
		t.Fatalf("drain started %v; want only the running instance's stop", started)
	}
	host, _ := h.store.Host("h1")
	if !host.Cordoned || !host.Draining {
		t.Fatalf("host after drain: %+v", host)
	}
	if h.status("run") != lifecycle.StatusStopping || h.status("busy") != lifecycle.StatusCreating || h.status("off") != lifecycle.StatusStopped {
		t.Fatalf("statuses after drain: %s %s %s", h.status("run"), h.status("busy"), h.status("off"))
	}
	h.mustApply(TypeCordonHost, CordonHost{HostID: "h1", Cordon: false})
	if host, _ := h.store.Host("h1"); host.Cordoned || host.Draining {
		t.Fatalf("uncordon left %+v", host)
	}
}

func TestRecoverRechecksAtCommit(t *testing.T) {
	h := newHarness(t)
	e := h.register("h1", 8, 4096)
	h.apply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: "i1", Name: "i1", HostID: "h1", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64}, Recovery: state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 1}},
		Operation: state.Operation{ID: "op-c", InstanceID: "i1", Deadline: h.now.Add(time.Minute)},
	})
	h.finishAll("op-c")
	restart := func(id string) Result {
		return h.apply(TypeRecover, Recover{InstanceID: "i1", Restart: &state.Operation{ID: id, InstanceID: "i1", Deadline: h.now.Add(time.Minute)}})
	}
	if r := restart("op-r0"); !errors.Is(r.Err, ErrNotAllowed) {
		t.Fatalf("recover a running instance: %v", r.Err)
	}
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: e, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerShutOff, Time: h.now}}})
	if r := restart("op-r1"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if i, _ := h.store.Instance("i1"); i.Restarts != 1 || i.Status() != lifecycle.StatusStarting {
		t.Fatalf("after recovery: %+v %s", i, i.Status())
	}
	h.finishAll("op-r1")
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: e, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerShutOff, Time: h.now.Add(time.Hour)}}})
	if r := restart("op-r2"); !errors.Is(r.Err, ErrNotAllowed) {
		t.Fatalf("a restart beyond the limit: %v", r.Err)
	}
	// The user's start resets the count.
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStart, Operation: state.Operation{ID: "op-u", InstanceID: "i1", Deadline: h.now.Add(time.Minute)}})
	if i, _ := h.store.Instance("i1"); i.Restarts != 0 {
		t.Fatalf("restarts after a user start: %d", i.Restarts)
	}
}
