package orchestrator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// agents records what the orchestrator sends to connected hosts.
type agents struct {
	mu      sync.Mutex
	epochs  map[string]uint64
	steps   []*agentv1.RunStep
	queries []*agentv1.QueryStep
}

func (a *agents) Epoch(h string) (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.epochs[h]
	return e, ok
}
func (a *agents) Send(h string, s *agentv1.RunStep) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	s.HostEpoch = a.epochs[h]
	a.steps = append(a.steps, s)
	return nil
}
func (a *agents) Query(h string, q *agentv1.QueryStep) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queries = append(a.queries, q)
	return nil
}
func (a *agents) Changed() <-chan struct{} { return nil }

func (a *agents) take() (steps []*agentv1.RunStep, queries []*agentv1.QueryStep) {
	a.mu.Lock()
	defer a.mu.Unlock()
	steps, queries = a.steps, a.queries
	a.steps, a.queries = nil, nil
	return steps, queries
}

type driveHarness struct {
	*placeHarness
	agents *agents
}

func newDriveHarness(t *testing.T) *driveHarness {
	ph := newPlaceHarness(t)
	a := &agents{epochs: map[string]uint64{}}
	ph.o.cfg.Sessions = a
	ph.o.asked = map[string]query{}
	h := &driveHarness{placeHarness: ph, agents: a}
	h.register("h1", 4)
	a.epochs["h1"] = 1
	h.apply(fsm.TypeCreateInstance, fsm.CreateInstance{
		Instance:  state.Instance{ID: "i", Name: "i", HostID: "h1", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-i", InstanceID: "i", Deadline: h.now.Add(time.Minute)},
	})
	return h
}

func (h *driveHarness) drive() ([]*agentv1.RunStep, []*agentv1.QueryStep) {
	h.o.drive(context.Background(), h.store.HostedOperations(), h.now)
	return h.agents.take()
}

func (h *driveHarness) op() state.Operation {
	op, err := h.store.Operation("op-i")
	if err != nil {
		h.t.Fatal(err)
	}
	return op
}

func TestStepSentOncePerSession(t *testing.T) {
	h := newDriveHarness(t)
	steps, _ := h.drive()
	// A create checks the host first; the check carries the spec it checks.
	if len(steps) != 1 || steps[0].StepId != "op-i/0/1" || steps[0].Action != agentv1.StepAction_STEP_ACTION_PREFLIGHT ||
		steps[0].HostEpoch != 1 || steps[0].Spec.GetImage() != "img" {
		t.Fatalf("first pass sent %v", steps)
	}
	if steps, q := h.drive(); len(steps) != 0 || len(q) != 0 {
		t.Fatalf("second pass sent %v, asked %v", steps, q)
	}
	h.apply(fsm.TypeFinish, fsm.Finish{OperationID: "op-i", StepID: "op-i/0/1", Succeeded: true, HostID: "h1"})
	steps, _ = h.drive()
	if len(steps) != 1 || steps[0].StepId != "op-i/1/1" || steps[0].Action != agentv1.StepAction_STEP_ACTION_CREATE {
		t.Fatalf("after the preflight sent %v", steps)
	}
}

func TestNewLeaderAsksBeforeResending(t *testing.T) {
	h := newDriveHarness(t)
	h.drive()
	// A new leader (fresh memory); the agent reconnected under epoch 2.
	h.o.sent, h.o.asked = map[string]uint64{}, map[string]query{}
	h.agents.epochs["h1"] = 2
	steps, queries := h.drive()
	if len(steps) != 0 || len(queries) != 1 || queries[0].StepId != "op-i/0/1" {
		t.Fatalf("sent %v, asked %v", steps, queries)
	}
	if steps, queries := h.drive(); len(steps) != 0 || len(queries) != 0 {
		t.Fatalf("asked twice: sent %v, asked %v", steps, queries)
	}
	// An answer that never comes (lost with a session) is asked for again.
	h.now = h.now.Add(reaskAfter + time.Second)
	if _, queries := h.drive(); len(queries) != 1 {
		t.Fatalf("no answer for %s: asked %v", reaskAfter, queries)
	}
	// Still running there: nothing is re-sent.
	h.o.StepReport("h1", 2, &agentv1.StepReport{StepId: "op-i/0/1", State: agentv1.StepReportState_STEP_REPORT_STATE_RUNNING})
	if steps, queries := h.drive(); len(steps) != 0 || len(queries) != 0 {
		t.Fatalf("after RUNNING: sent %v, asked %v", steps, queries)
	}
	// Another session: ask again; the agent never got it: it is sent, same step id.
	h.agents.epochs["h1"] = 3
	if _, queries := h.drive(); len(queries) != 1 {
		t.Fatalf("after a new session: asked %v", queries)
	}
	h.o.StepReport("h1", 3, &agentv1.StepReport{StepId: "op-i/0/1", State: agentv1.StepReportState_STEP_REPORT_STATE_UNKNOWN})
	steps, _ = h.drive()
	if len(steps) != 1 || steps[0].StepId != "op-i/0/1" || steps[0].HostEpoch != 3 {
		t.Fatalf("after UNKNOWN: sent %v", steps)
	}
	if op := h.op(); op.HostEpoch != 3 || op.Steps[0].Attempt != 1 {
		t.Fatalf("recorded: %+v", op)
	}
	// The agent restarted under it (session 4) and the hypervisor shows the
	// step's effect absent: NOT_DONE; it is sent again, same step id, and
	// the agent runs it once more.
	h.agents.epochs["h1"] = 4
	if _, queries := h.drive(); len(queries) != 1 {
		t.Fatalf("after a restart: asked %v", queries)
	}
	h.o.StepReport("h1", 4, &agentv1.StepReport{StepId: "op-i/0/1", State: agentv1.StepReportState_STEP_REPORT_STATE_NOT_DONE})
	steps, _ = h.drive()
	if len(steps) != 1 || steps[0].StepId != "op-i/0/1" || steps[0].HostEpoch != 4 {
		t.Fatalf("after NOT_DONE: sent %v", steps)
	}
}

func TestRetryWaitsForItsBackoff(t *testing.T) {
	h := newDriveHarness(t)
	h.drive()
	h.apply(fsm.TypeFinish, fsm.Finish{OperationID: "op-i", StepID: "op-i/0/1", HostID: "h1",
		Fault: &state.Fault{Code: "HYPERVISOR_UNAVAILABLE", Message: "connection reset"}})
	if steps, _ := h.drive(); len(steps) != 0 {
		t.Fatalf("retried before the back-off: %v", steps)
	}
	h.now = h.op().Steps[0].RetryTime.Add(time.Millisecond)
	steps, _ := h.drive()
	if len(steps) != 1 || steps[0].StepId != "op-i/0/2" {
		t.Fatalf("after the back-off: %v", steps)
	}
}

func TestStepPastItsDeadlineEnds(t *testing.T) {
	h := newDriveHarness(t)
	h.drive()
	h.now = h.op().Steps[0].Deadline.Add(h.o.cfg.Grace + time.Second)
	h.drive()
	op := h.op()
	if op.State != state.OpFailed || op.Fault.Code != "DEADLINE_EXCEEDED" || op.Steps[0].State != state.StepFailed {
		t.Fatalf("%+v", op)
	}
	i, _ := h.store.Instance("i")
	if i.Status() != lifecycle.StatusError {
		t.Fatalf("instance %s", i.Status())
	}
}

func TestMoveStepsCarryTheDiskHandOver(t *testing.T) {
	h := newDriveHarness(t)
	h.register("h2", 4)
	h.agents.epochs["h2"] = 1
	h.apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: "h1", Kind: "fake", PeerAddr: "127.0.0.1:7001", Capacity: state.Resources{VCPUs: 4, MemoryMiB: 1 << 20, DiskGiB: 1 << 20}},
		Inventory: []fsm.Observation{{InstanceID: "i", Power: lifecycle.PowerShutOff, Time: h.now}}})
	h.o.sent = map[string]uint64{}
	h.done("op-i")
	h.apply(fsm.TypeInstanceAction, fsm.InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-s", InstanceID: "i", Deadline: h.now.Add(time.Minute)}})
	h.done("op-s")
	h.apply(fsm.TypeDrainHost, fsm.DrainHost{HostID: "h1", Moves: []state.Operation{{ID: "op-mv", InstanceID: "i", TargetHostID: "h2", Token: "secret", Deadline: h.now.Add(time.Hour)}}})
	steps, _ := h.drive()
	if len(steps) != 1 || steps[0].Action != agentv1.StepAction_STEP_ACTION_OFFER_DISK || steps[0].OfferToken != "secret" || steps[0].PeerHostId != "h2" {
		t.Fatalf("offer: %v", steps)
	}
	h.apply(fsm.TypeFinish, fsm.Finish{OperationID: "op-mv", StepID: steps[0].StepId, Succeeded: true, HostID: "h1"})
	steps, _ = h.drive()
	if len(steps) != 1 || steps[0].Action != agentv1.StepAction_STEP_ACTION_IMPORT_DISK || steps[0].PeerAddress != "127.0.0.1:7001" || steps[0].PeerHostId != "h1" || steps[0].OfferToken != "secret" {
		t.Fatalf("import: %v", steps)
	}
}

// TestEveryPlannedActionIsSent: every step a plan holds that runs on a
// host, undo steps included, has an agent action to send; an unmapped one
// would reach the agent as UNSPECIFIED and fail as an invalid step.
func TestEveryPlannedActionIsSent(t *testing.T) {
	for _, k := range lifecycle.AllOpKinds[1:] {
		for _, running := range []bool{false, true} {
			for _, s := range lifecycle.StepsFor(k, running) {
				for _, d := range []*lifecycle.StepDef{&s, s.Undo} {
					if d == nil || !d.Action.OnHost() {
						continue
					}
					if convert.StepActionToPB(d.Action) == agentv1.StepAction_STEP_ACTION_UNSPECIFIED {
						t.Errorf("%s (running %v): step %s: action %s has no agent action", k, running, d.Name, d.Action)
					}
				}
			}
		}
	}
}
