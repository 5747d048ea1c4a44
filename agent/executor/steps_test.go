package executor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// actionStep is a step of a newer coordinator: a step id and an action, and
// an operation kind that says nothing about what to do.
func actionStep(op, stepID, inst string, a agentv1.StepAction) *agentv1.RunStep {
	s := step(op, inst, flotillav1.OperationKind_OPERATION_KIND_MOVE)
	s.StepId, s.Action = stepID, a
	return s
}

func withSpec(s *agentv1.RunStep) *agentv1.RunStep {
	s.Name = s.InstanceId
	s.Spec = &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "flotilla-test"}
	return s
}

func wantFault(t *testing.T, r *agentv1.StepResult, code string) {
	t.Helper()
	if r.GetSucceeded() || r.GetFault().GetCode() != code {
		t.Fatalf("result %v, want fault %s", r, code)
	}
}

// Every action calls its driver method, whatever the operation's kind.
func TestActions(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	A := agentv1.StepAction_value
	seq := []struct {
		action string
		method string
		after  flotillav1.PowerState
	}{
		{"STEP_ACTION_PREFLIGHT", "Preflight", flotillav1.PowerState_POWER_STATE_NO_DOMAIN},
		{"STEP_ACTION_CREATE", "Create", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_RESTART", "Reboot", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_HARD_RESTART", "Reboot", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_PAUSE", "Pause", flotillav1.PowerState_POWER_STATE_PAUSED},
		{"STEP_ACTION_UNPAUSE", "Resume", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_SUSPEND", "Save", flotillav1.PowerState_POWER_STATE_SAVED_TO_DISK},
		{"STEP_ACTION_RESUME", "Start", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_UPDATE", "SetTitle", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_FREEZE_DISK", "FreezeDisk", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_REFREEZE_DISK", "RefreezeDisk", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_THAW_DISK", "ThawDisk", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_GROW_DISK", "GrowDisk", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_STOP", "Shutdown", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_RELEASE_DOMAIN", "Release", flotillav1.PowerState_POWER_STATE_NO_DOMAIN},
		{"STEP_ACTION_DEFINE_DOMAIN", "Define", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_RESHAPE", "Reshape", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_UNSHAPE", "Unshape", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_DROP_ORIGINAL", "DropOriginal", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_REBUILD_DISK", "RebuildDisk", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_DROP_ORIGINAL", "DropOriginal", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_BUNDLE_DISK", "BundleDisk", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_RESCUE_DOMAIN", "RescueDomain", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_UNRESCUE_DOMAIN", "UnrescueDomain", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_UPGRADE_DISK", "UpgradeDisk", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_ROLLBACK_DISK", "Unshape", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_UPGRADE_DISK", "UpgradeDisk", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_DROP_SNAPSHOT", "DropOriginal", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"STEP_ACTION_START", "Start", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"STEP_ACTION_DELETE", "Delete", flotillav1.PowerState_POWER_STATE_NO_DOMAIN},
	}
	seen := map[string]bool{}
	for i, c := range seq {
		seen[c.action] = true
		before := drv.Calls(c.method)
		id := fmt.Sprintf("op-%d/step/1", i)
		s := actionStep(fmt.Sprintf("op-%d", i), id, "vm-1", agentv1.StepAction(A[c.action]))
		switch c.action {
		case "STEP_ACTION_CREATE", "STEP_ACTION_PREFLIGHT", "STEP_ACTION_UNSHAPE", "STEP_ACTION_REBUILD_DISK",
			"STEP_ACTION_UNRESCUE_DOMAIN", "STEP_ACTION_DEFINE_DOMAIN", "STEP_ACTION_ROLLBACK_DISK":
			withSpec(s)
		case "STEP_ACTION_RESCUE_DOMAIN", "STEP_ACTION_BUNDLE_DISK":
			withSpec(s).Image = "flotilla-test-2"
		case "STEP_ACTION_GROW_DISK":
			withSpec(s).Spec.DiskGib = 4
		case "STEP_ACTION_RESHAPE", "STEP_ACTION_UPGRADE_DISK":
			withSpec(s).Spec.Vcpus = 2
		}
		if c.action == "STEP_ACTION_UPDATE" {
			s.Name = "renamed"
		}
		if c.action == "STEP_ACTION_STOP" {
			s.GracefulTimeout = durationpb.New(time.Second)
		}
		r := e.Execute(s, epoch)
		mustSucceed(t, r)
		if drv.Calls(c.method) != before+1 {
			t.Errorf("%s did not call %s", c.action, c.method)
		}
		if r.GetState().GetState() != c.after {
			t.Errorf("%s: state %v, want %v", c.action, r.GetState(), c.after)
		}
		if title, _ := drv.Title("vm-1"); c.action == "STEP_ACTION_UPDATE" && title != "renamed" {
			t.Errorf("%s: title %q", c.action, title)
		}
		if r.GetStepId() != id || r.GetOperationId() != s.OperationId || r.GetHostEpoch() != epoch {
			t.Errorf("%s: result %v", c.action, r)
		}
	}
	// The disk copy's actions are TestMover's (FETCH_IMAGE TestFetchImageStep's), SET_PASSWORD TestSetPassword's,
	// DECOMMISSION TestDecommission's, AWAIT_HEALTHY TestAwaitHealthy's;
	// every other action is covered here.
	for name, v := range A {
		a := agentv1.StepAction(v)
		if a != agentv1.StepAction_STEP_ACTION_UNSPECIFIED && a != agentv1.StepAction_STEP_ACTION_OFFER_DISK &&
			a != agentv1.StepAction_STEP_ACTION_IMPORT_DISK && a != agentv1.StepAction_STEP_ACTION_RECEIVE_DISK &&
			a != agentv1.StepAction_STEP_ACTION_ADOPT_DISK && a != agentv1.StepAction_STEP_ACTION_SET_PASSWORD &&
			a != agentv1.StepAction_STEP_ACTION_DECOMMISSION && a != agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY &&
			a != agentv1.StepAction_STEP_ACTION_FETCH_IMAGE && !seen[name] {
			t.Errorf("action %s not tested", name)
		}
	}
}

// The action decides, not the kind; without an action, the kind does.
func TestActionOverKind(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))

	s := step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_DELETE)
	s.StepId, s.Action = "op-1/pause/1", agentv1.StepAction_STEP_ACTION_PAUSE
	mustSucceed(t, e.Execute(s, epoch))
	if drv.Calls("Pause") != 1 || drv.Calls("Delete") != 0 {
		t.Errorf("Pause %d, Delete %d calls", drv.Calls("Pause"), drv.Calls("Delete"))
	}
	// UNSPECIFIED with a kind that names no one-step action.
	s = step("op-2", "vm-1", flotillav1.OperationKind_OPERATION_KIND_MOVE)
	s.StepId = "op-2/x/1"
	wantFault(t, e.Execute(s, epoch), executor.FaultInvalidStep)
}

// A step id runs at most once; another attempt of the operation is another
// step and runs.
func TestStepIDDedup(t *testing.T) {
	drv := newFake()
	e, store := newExecutor(t, drv, "")
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))

	// Attempt 1 fails on a transient fault; sent again, it is not re-run.
	drv.InjectFault("Pause", fmt.Errorf("lost libvirtd: %w", hypervisor.ErrUnavailable), 1)
	a1 := actionStep("op-1", "op-1/pause/1", "vm-1", agentv1.StepAction_STEP_ACTION_PAUSE)
	r1 := e.Execute(a1, epoch)
	wantFault(t, r1, executor.FaultHypervisorUnavailable)
	if r1.GetStepId() != "op-1/pause/1" {
		t.Errorf("fault result without step id: %v", r1)
	}
	if again := e.Execute(a1, epoch); !proto.Equal(again, r1) {
		t.Errorf("re-sent attempt 1: %v, want %v", again, r1)
	}
	if drv.Calls("Pause") != 1 {
		t.Fatalf("Pause called %d times, want 1", drv.Calls("Pause"))
	}

	// Attempt 2 runs, and is recorded apart from attempt 1.
	a2 := actionStep("op-1", "op-1/pause/2", "vm-1", agentv1.StepAction_STEP_ACTION_PAUSE)
	r2 := e.Execute(a2, epoch)
	mustSucceed(t, r2)
	if r2.GetStepId() != "op-1/pause/2" || drv.Calls("Pause") != 2 {
		t.Errorf("attempt 2: %v, %d calls", r2, drv.Calls("Pause"))
	}
	if again := e.Execute(a2, epoch); !proto.Equal(again, r2) || drv.Calls("Pause") != 2 {
		t.Errorf("re-sent attempt 2: %v, %d calls", again, drv.Calls("Pause"))
	}
	for id, ok := range map[string]bool{"op-1/pause/1": false, "op-1/pause/2": true} {
		if rec, _ := store.Get(id); rec.State != stepstore.Finished || rec.Result.GetSucceeded() != ok ||
			rec.OperationID != "op-1" || rec.Action != agentv1.StepAction_STEP_ACTION_PAUSE {
			t.Errorf("%s: record %+v", id, rec)
		}
	}
	// The operation id alone (an older coordinator) is yet another key.
	if rec, _ := store.Get("op-1"); rec.State != stepstore.Unknown {
		t.Errorf("op-1 recorded under its operation id: %v", rec.State)
	}
}

// The same step id while it runs: the second call leaves the answer to the
// first; a second attempt waits for the instance, then runs.
func TestStepIDWhileRunning(t *testing.T) {
	drv := newFake()
	tr := &tracker{Driver: drv, inFlight: map[string]int{}}
	e, _ := newExecutor(t, tr, "")
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))
	drv.SetDelay("Reboot", 50*time.Millisecond)
	a1 := actionStep("op-1", "op-1/reboot/1", "vm-1", agentv1.StepAction_STEP_ACTION_RESTART)
	a2 := actionStep("op-1", "op-1/reboot/2", "vm-1", agentv1.StepAction_STEP_ACTION_RESTART)
	first, second := make(chan *agentv1.StepResult, 1), make(chan *agentv1.StepResult, 1)
	go func() { first <- e.Execute(a1, epoch) }()
	waitFor(t, func() bool { return drv.Calls("Reboot") == 1 })
	if r := e.Execute(a1, epoch); r != nil {
		t.Errorf("duplicate returned %v", r)
	}
	go func() { second <- e.Execute(a2, epoch) }()
	mustSucceed(t, <-first)
	r := <-second
	mustSucceed(t, r)
	if r.GetStepId() != "op-1/reboot/2" || drv.Calls("Reboot") != 2 || tr.maxSame != 1 {
		t.Errorf("attempt 2 %v; %d Reboot calls; %d at once", r, drv.Calls("Reboot"), tr.maxSame)
	}
}

// An agent restart in the middle of attempt 1 makes attempt 1 AGENT_RESTARTED
// and touches no other step id.
func TestRestartMidStepPerStepID(t *testing.T) {
	drv := newFake()
	db := filepath.Join(t.TempDir(), "agent.db")
	e, store := newExecutor(t, drv, db)
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))
	drv.SetDelay("Pause", time.Hour)
	a1 := actionStep("op-1", "op-1/pause/1", "vm-1", agentv1.StepAction_STEP_ACTION_PAUSE)
	res := make(chan *agentv1.StepResult, 1)
	go func() { res <- e.Execute(a1, epoch) }()
	waitFor(t, func() bool { return drv.Calls("Pause") == 1 })
	e.Close()
	if r := <-res; r != nil {
		t.Errorf("abandoned step returned %v", r)
	}
	store.Close()

	drv.SetDelay("Pause", 0)
	e2, _ := newExecutor(t, drv, db)
	// Attempt 2 is a new step: it runs.
	a2 := actionStep("op-1", "op-1/pause/2", "vm-1", agentv1.StepAction_STEP_ACTION_PAUSE)
	a2.HostEpoch = epoch + 1
	mustSucceed(t, e2.Execute(a2, epoch+1))
	if drv.Calls("Pause") != 2 {
		t.Fatalf("Pause called %d times, want 2", drv.Calls("Pause"))
	}
	// Attempt 1 finds the domain paused: done, with the domain's state,
	// and not re-run.
	a1.HostEpoch = epoch + 1
	r := e2.Execute(a1, epoch+1)
	mustSucceed(t, r)
	if r.GetStepId() != "op-1/pause/1" || r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_PAUSED ||
		!strings.Contains(r.GetNote(), "done before the agent restarted") {
		t.Errorf("interrupted result %v", r)
	}
	if drv.Calls("Pause") != 2 {
		t.Errorf("Pause called %d times, want 2", drv.Calls("Pause"))
	}
}

// Report in each of its cases; a running step does not hold the answer up.
func TestReport(t *testing.T) {
	drv := newFake()
	db := filepath.Join(t.TempDir(), "agent.db")
	e, store := newExecutor(t, drv, db)
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))
	mustSucceed(t, e.Execute(create("op-9", "vm-2"), epoch))
	st := func(r *agentv1.StepReport) agentv1.StepReportState { return r.GetState() }

	// UNKNOWN: never received.
	if r := e.Report("op-1/pause/1", "op-1"); st(r) != agentv1.StepReportState_STEP_REPORT_STATE_UNKNOWN ||
		r.GetStepId() != "op-1/pause/1" || r.GetOperationId() != "op-1" || r.GetResult() != nil {
		t.Errorf("never sent: %v", r)
	}

	// RUNNING: running now, and for as long as it runs.
	drv.SetDelay("Pause", time.Hour)
	s := actionStep("op-1", "op-1/pause/1", "vm-1", agentv1.StepAction_STEP_ACTION_PAUSE)
	s.Deadline = timestamppb.New(time.Now().Add(time.Hour))
	res := make(chan *agentv1.StepResult, 1)
	go func() { res <- e.Execute(s, epoch) }()
	waitFor(t, func() bool { return drv.Calls("Pause") == 1 })
	if r := e.Report("op-1/pause/1", "op-1"); st(r) != agentv1.StepReportState_STEP_REPORT_STATE_RUNNING {
		t.Errorf("running: %v", r)
	}

	// FINISHED: the kept result.
	s2 := actionStep("op-2", "op-2/reboot/1", "vm-2", agentv1.StepAction_STEP_ACTION_RESTART)
	r2 := e.Execute(s2, epoch)
	mustSucceed(t, r2)
	if r := e.Report("op-2/reboot/1", "op-2"); st(r) != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED ||
		!proto.Equal(r.GetResult(), r2) {
		t.Errorf("finished: %v, want result %v", r, r2)
	}

	// Started, not running here: the agent restarted mid-step.
	e.Close()
	if r := <-res; r != nil {
		t.Errorf("abandoned step returned %v", r)
	}
	store.Close()
	e2, store2 := newExecutor(t, drv, db)
	// The domain is running: the pause is not done. Nothing is recorded;
	// sent again, it runs again, once.
	r := e2.Report("op-1/pause/1", "op-1")
	if st(r) != agentv1.StepReportState_STEP_REPORT_STATE_NOT_DONE || r.GetResult() != nil {
		t.Fatalf("interrupted, not done: %v", r)
	}
	if rec, _ := store2.Get("op-1/pause/1"); rec.State != stepstore.Started {
		t.Errorf("record %v, want started", rec.State)
	}
	drv.SetDelay("Pause", 0)
	s.HostEpoch = epoch + 1
	done := e2.Execute(s, epoch+1)
	mustSucceed(t, done)
	if drv.Calls("Pause") != 2 {
		t.Errorf("Pause called %d times, want 2", drv.Calls("Pause"))
	}
	if again := e2.Report("op-1/pause/1", "op-1"); st(again) != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED ||
		!proto.Equal(again.GetResult(), done) {
		t.Errorf("queried after the rerun: %v, want %v", again, done)
	}
	// A restart under a reboot: nobody can tell; AGENT_RESTARTED, recorded.
	rb := actionStep("op-3", "op-3/reboot/1", "vm-2", agentv1.StepAction_STEP_ACTION_RESTART)
	if _, _, err := store2.Begin("op-3/reboot/1", stepstore.Step{OperationID: "op-3", Action: agentv1.StepAction_STEP_ACTION_RESTART, InstanceID: "vm-2", HostEpoch: epoch}); err != nil {
		t.Fatal(err)
	}
	r = e2.Report("op-3/reboot/1", "op-3")
	if st(r) != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED {
		t.Fatalf("interrupted reboot: %v", r)
	}
	wantFault(t, r.GetResult(), executor.FaultAgentRestarted)
	if res := r.GetResult(); res.GetStepId() != "op-3/reboot/1" || res.GetOperationId() != "op-3" ||
		res.GetHostEpoch() != epoch || res.GetState().GetInstanceId() != "vm-2" {
		t.Errorf("interrupted result %v", res)
	}
	if again := e2.Execute(rb, epoch+1); !proto.Equal(again, r.GetResult()) {
		t.Errorf("re-sent: %v, want %v", again, r.GetResult())
	}
	if again := e2.Report("op-3/reboot/1", "op-3"); !proto.Equal(again, r) {
		t.Errorf("queried again: %v, want %v", again, r)
	}
	if drv.Calls("Reboot") != 1 {
		t.Errorf("Reboot called %d times, want 1", drv.Calls("Reboot"))
	}
	// An older coordinator's step, known by its operation id.
	if r := e2.Report("", "op-0"); st(r) != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED || !r.GetResult().GetSucceeded() {
		t.Errorf("by operation id: %v", r)
	}
}

// moverCall is one call of fakeMover.
type moverCall struct {
	method                string
	instance, token, peer string
	addr                  string
	until                 time.Time
	spec                  hypervisor.DomainSpec
	layer                 hypervisor.DiskLayer
}

// fakeMover records calls and fails with err.
type fakeMover struct {
	mu    sync.Mutex
	calls []moverCall
	err   error
}

func (m *fakeMover) Offer(ctx context.Context, instanceID string, layer hypervisor.DiskLayer, token, toHostID string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, moverCall{method: "Offer", instance: instanceID, token: token, peer: toHostID, until: until, layer: layer})
	return m.err
}

func (m *fakeMover) Import(ctx context.Context, spec hypervisor.DomainSpec, fromHostID, fromAddr, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, moverCall{method: "Import", instance: spec.ID, token: token, peer: fromHostID, addr: fromAddr, spec: spec})
	return m.err
}

func (m *fakeMover) Receive(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, moverCall{method: "Receive", instance: spec.ID, token: token, peer: fromHostID, addr: fromAddr, spec: spec, layer: layer})
	return m.err
}

func (m *fakeMover) FetchImage(ctx context.Context, name, sum, fromHostID, fromAddr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, moverCall{method: "FetchImage", instance: name, token: sum, peer: fromHostID, addr: fromAddr})
	return m.err
}

func (m *fakeMover) Revoke(instanceID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, moverCall{method: "Revoke", instance: instanceID})
}

func (m *fakeMover) take() []moverCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

func newMoverExecutor(t *testing.T, mv executor.Mover) *executor.Executor {
	t.Helper()
	store, err := stepstore.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := executor.New(executor.Config{
		HostID: "host-a", Driver: newFake(), Store: store, Mover: mv,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); store.Close() })
	return e
}

func offer(op string) *agentv1.RunStep {
	s := actionStep(op, op+"/offer/1", "vm-1", agentv1.StepAction_STEP_ACTION_OFFER_DISK)
	s.OfferToken, s.PeerHostId = "tok-"+op, "host-b"
	return s
}

func importStep(op string) *agentv1.RunStep {
	s := withSpec(actionStep(op, op+"/import/1", "vm-1", agentv1.StepAction_STEP_ACTION_IMPORT_DISK))
	s.Spec.DiskGib = 10
	s.OfferToken, s.PeerHostId, s.PeerAddress = "tok-"+op, "host-b", "10.0.0.2:7450"
	return s
}

func TestMover(t *testing.T) {
	mv := &fakeMover{}
	e := newMoverExecutor(t, mv)

	s := offer("op-1")
	mustSucceed(t, e.Execute(s, epoch))
	got := mv.take()
	if len(got) != 1 || got[0].method != "Offer" || got[0].instance != "vm-1" || got[0].token != "tok-op-1" ||
		got[0].peer != "host-b" || got[0].until.Before(s.Deadline.AsTime()) || got[0].until.Before(time.Now().Add(29*time.Minute)) {
		t.Errorf("Offer calls %+v: the offer must outlive its step, so a failed import can pull again", got)
	}

	// A preflight changes nothing and leaves the offer alone; any other step
	// on the instance withdraws its offers first.
	mustSucceed(t, e.Execute(withSpec(actionStep("op-8", "op-8/0/1", "vm-1", agentv1.StepAction_STEP_ACTION_PREFLIGHT)), epoch))
	if got := mv.take(); len(got) != 0 {
		t.Errorf("calls before a preflight: %+v", got)
	}
	mustSucceed(t, e.Execute(actionStep("op-9", "op-9/0/1", "vm-1", agentv1.StepAction_STEP_ACTION_DELETE), epoch))
	if got := mv.take(); len(got) != 1 || got[0].method != "Revoke" || got[0].instance != "vm-1" {
		t.Errorf("calls before a delete: %+v", got)
	}

	s = importStep("op-2")
	mustSucceed(t, e.Execute(s, epoch))
	got = mv.take()
	want := hypervisor.DomainSpec{ID: "vm-1", Name: "vm-1", VCPUs: 1, MemoryMiB: 512, DiskGiB: 10, Image: "flotilla-test"}
	if len(got) != 1 || got[0].method != "Import" || !got[0].spec.Equal(want) || got[0].token != "tok-op-2" ||
		got[0].peer != "host-b" || got[0].addr != "10.0.0.2:7450" {
		t.Errorf("Import calls %+v", got)
	}

	// A resize offers and receives one layer of the disk at a time.
	s = offer("op-3")
	s.DiskLayer = agentv1.DiskLayer_DISK_LAYER_BASE
	mustSucceed(t, e.Execute(s, epoch))
	if got := mv.take(); len(got) != 1 || got[0].method != "Offer" || got[0].layer != hypervisor.DiskBase {
		t.Errorf("Offer of the base: %+v", got)
	}
	s = importStep("op-4")
	s.Action, s.DiskLayer = agentv1.StepAction_STEP_ACTION_RECEIVE_DISK, agentv1.DiskLayer_DISK_LAYER_TOP
	mustSucceed(t, e.Execute(s, epoch))
	// The target's receive leaves the source's offers alone (none are its).
	if got := mv.take(); len(got) != 1 || got[0].method != "Receive" || got[0].layer != hypervisor.DiskTop ||
		!got[0].spec.Equal(want) || got[0].addr != "10.0.0.2:7450" {
		t.Errorf("Receive of the top: %+v", got)
	}
	s = importStep("op-5")
	s.DiskLayer = 7
	s.Action = agentv1.StepAction_STEP_ACTION_RECEIVE_DISK
	wantFault(t, e.Execute(s, epoch), executor.FaultInvalidStep)
}

func TestMoverRefusals(t *testing.T) {
	cases := []struct {
		name string
		step *agentv1.RunStep
	}{
		{"offer without token", func() *agentv1.RunStep { s := offer("a"); s.OfferToken = ""; return s }()},
		{"offer with a huge token", func() *agentv1.RunStep { s := offer("b"); s.OfferToken = strings.Repeat("t", 2000); return s }()},
		{"offer to no host", func() *agentv1.RunStep { s := offer("c"); s.PeerHostId = ""; return s }()},
		{"offer to a bad host id", func() *agentv1.RunStep { s := offer("d"); s.PeerHostId = "Host_B"; return s }()},
		{"offer to itself", func() *agentv1.RunStep { s := offer("e"); s.PeerHostId = "host-a"; return s }()},
		{"import without token", func() *agentv1.RunStep { s := importStep("f"); s.OfferToken = ""; return s }()},
		{"import from a bad host id", func() *agentv1.RunStep { s := importStep("g"); s.PeerHostId = "-b"; return s }()},
		{"import without address", func() *agentv1.RunStep { s := importStep("h"); s.PeerAddress = ""; return s }()},
		{"import from an address without port", func() *agentv1.RunStep { s := importStep("i"); s.PeerAddress = "10.0.0.2"; return s }()},
		{"import from an address without host", func() *agentv1.RunStep { s := importStep("j"); s.PeerAddress = ":7450"; return s }()},
		{"import from port 0", func() *agentv1.RunStep { s := importStep("k"); s.PeerAddress = "h:0"; return s }()},
		{"import from a named port", func() *agentv1.RunStep { s := importStep("l"); s.PeerAddress = "h:http"; return s }()},
	}
	mv := &fakeMover{}
	e := newMoverExecutor(t, mv)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantFault(t, e.Execute(c.step, epoch), executor.FaultInvalidStep)
			if got := mv.take(); len(got) != 0 {
				t.Errorf("Mover called: %+v", got)
			}
		})
	}

	// Without a Mover, both disk actions are refused.
	e = newMoverExecutor(t, nil)
	for _, s := range []*agentv1.RunStep{offer("m"), importStep("n")} {
		r := e.Execute(s, epoch)
		wantFault(t, r, executor.FaultInvalidStep)
		if !strings.Contains(r.GetFault().GetMessage(), "this agent does not move disks") {
			t.Errorf("%s: message %q", s.Action, r.GetFault().GetMessage())
		}
	}
}

func TestMoverFaults(t *testing.T) {
	cases := []struct {
		name string
		step func(op string) *agentv1.RunStep
		err  error
		code string
	}{
		{"offer, peer gone", offer, executor.ErrPeerUnavailable, executor.FaultPeerUnavailable},
		{"import, peer gone", importStep, executor.ErrPeerUnavailable, executor.FaultPeerUnavailable},
		{"import, digest mismatch", importStep, executor.ErrDiskCorrupt, executor.FaultDiskCorrupt},
		{"import, disk refused", importStep, hypervisor.ErrInvalidSpec, executor.FaultInvalidDisk},
		{"offer, no domain", offer, hypervisor.ErrNotFound, executor.FaultDomainNotFound},
		{"offer, running", offer, hypervisor.ErrInvalidState, executor.FaultInvalidState},
		{"import, already there", importStep, hypervisor.ErrAlreadyExists, executor.FaultHypervisorError},
		{"import, deadline", importStep, context.DeadlineExceeded, executor.FaultDeadlineExceeded},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mv := &fakeMover{err: fmt.Errorf("transfer: %w", c.err)}
			e := newMoverExecutor(t, mv)
			r := e.Execute(c.step(fmt.Sprintf("op-%d", i)), epoch)
			wantFault(t, r, c.code)
			if r.GetFault().GetMessage() != mv.err.Error() {
				t.Errorf("message %q, want %q", r.GetFault().GetMessage(), mv.err)
			}
		})
	}

	// A spec the driver would refuse is refused before the pull, as a spec.
	mv := &fakeMover{}
	e := newMoverExecutor(t, mv)
	s := importStep("op-x")
	s.Spec.Vcpus = 0
	wantFault(t, e.Execute(s, epoch), executor.FaultInvalidSpec)
	s = importStep("op-y")
	s.Spec.MemoryMib = -1
	wantFault(t, e.Execute(s, epoch), executor.FaultInvalidSpec)
	if got := mv.take(); len(got) != 0 {
		t.Errorf("Mover called: %+v", got)
	}
}

// TestPreflight: the host's checks before a create or a boot fail fast with
// a precise, permanent fault, and change nothing.
func TestPreflight(t *testing.T) {
	const reserve = 1 << 30
	newPreflight := func(t *testing.T) (*executor.Executor, *fake.Driver) {
		drv := newFake()
		store, err := stepstore.Open(filepath.Join(t.TempDir(), "agent.db"))
		if err != nil {
			t.Fatal(err)
		}
		e, err := executor.New(executor.Config{
			HostID: "host-a", Driver: drv, Store: store, DiskReserve: reserve,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(); store.Close() })
		return e, drv
	}
	preflight := func(op string, kind flotillav1.OperationKind, image string) *agentv1.RunStep {
		s := withSpec(step(op, "vm-1", kind))
		s.StepId, s.Action = op+"/0/1", agentv1.StepAction_STEP_ACTION_PREFLIGHT
		s.Spec.Image = image
		return s
	}
	create, start := flotillav1.OperationKind_OPERATION_KIND_CREATE, flotillav1.OperationKind_OPERATION_KIND_START
	hard := flotillav1.OperationKind_OPERATION_KIND_HARD_RESTART
	cases := []struct {
		name  string
		free  uint64
		kind  flotillav1.OperationKind
		image string
		fault string
		msg   string
	}{
		{name: "create with room", free: 10 << 30, kind: create, image: "flotilla-test"},
		// A create needs its new disk on top of the reserve; a boot the reserve alone.
		{name: "create at the reserve", free: reserve, kind: create, image: "flotilla-test", fault: executor.FaultInsufficientDisk,
			msg: fmt.Sprintf("disk directory /fake/disks has 1073741824 bytes (1.0 GiB) free, needs %d (1.0 GiB): %d for the disk now + 1073741824 reserve",
				reserve+fake.DefaultDiskSize, fake.DefaultDiskSize)},
		{name: "start at the reserve", free: reserve, kind: start, image: "flotilla-test"},
		{name: "hard restart below the reserve", free: reserve - 1, kind: hard, image: "flotilla-test", fault: executor.FaultInsufficientDisk,
			msg: "has 1073741823 bytes (1024.0 MiB) free, needs 1073741824 (1.0 GiB): 0 for the disk now + 1073741824 reserve"},
		{name: "no disk at all", free: 0, kind: create, image: "flotilla-test", fault: executor.FaultInsufficientDisk, msg: "has 0 bytes (0 B) free"},
		{name: "missing image", free: 10 << 30, kind: create, image: "no-such-image", fault: executor.FaultImageNotFound, msg: `image "no-such-image"`},
		{name: "missing image at boot", free: 10 << 30, kind: start, image: "no-such-image", fault: executor.FaultImageNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, drv := newPreflight(t)
			drv.SetDiskFree(c.free)
			r := e.Execute(preflight("op-1", c.kind, c.image), epoch)
			if c.fault == "" {
				mustSucceed(t, r)
			} else {
				wantFault(t, r, c.fault)
				if !strings.Contains(r.GetFault().GetMessage(), c.msg) || r.GetFault().GetHostId() != "host-a" {
					t.Errorf("fault %v, want a message with %q", r.GetFault(), c.msg)
				}
			}
			// Nothing was made: no domain, and the result says so.
			if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_NO_DOMAIN || drv.Calls("Create") != 0 || drv.Calls("Start") != 0 {
				t.Errorf("after the preflight: %v, Create %d, Start %d calls", r.GetState(), drv.Calls("Create"), drv.Calls("Start"))
			}
			if st, _ := drv.Status(context.Background(), "vm-1"); st.State != hypervisor.PowerNoDomain {
				t.Errorf("domain after a preflight: %v", st)
			}
		})
	}
}

// A step's NICs and guest configuration reach the driver for every action
// that defines a domain or preflights one; what cannot be parsed, or names
// a bridge this host lacks, fails with the precise fault before anything
// is made.
func TestNICsAndSeed(t *testing.T) {
	nic := func() *agentv1.Nic {
		return &agentv1.Nic{
			Network: "web", Mode: flotillav1.NetworkMode_NETWORK_MODE_NAT, Cidr: "198.19.9.0/24", Gateway: "198.19.9.1",
			MacAddress: "52:54:00:12:34:56", Ipv4Address: "198.19.9.20", Hostname: "vm-1",
		}
	}
	cases := []struct {
		name   string
		action agentv1.StepAction
		edit   func(n *agentv1.Nic)
		fault  string
	}{
		{"preflight", agentv1.StepAction_STEP_ACTION_PREFLIGHT, nil, ""},
		{"create", agentv1.StepAction_STEP_ACTION_CREATE, nil, ""},
		{"bad cidr", agentv1.StepAction_STEP_ACTION_CREATE, func(n *agentv1.Nic) { n.Cidr = "198.19.9.0" }, executor.FaultInvalidSpec},
		{"bad gateway", agentv1.StepAction_STEP_ACTION_CREATE, func(n *agentv1.Nic) { n.Gateway = "x" }, executor.FaultInvalidSpec},
		{"bad address", agentv1.StepAction_STEP_ACTION_PREFLIGHT, func(n *agentv1.Nic) { n.Ipv4Address = "198.19.10.20" }, executor.FaultInvalidSpec},
		{"no mode", agentv1.StepAction_STEP_ACTION_CREATE, func(n *agentv1.Nic) { n.Mode = 0 }, executor.FaultInvalidSpec},
		{"bridge present", agentv1.StepAction_STEP_ACTION_CREATE, func(n *agentv1.Nic) {
			n.Mode, n.Bridge = flotillav1.NetworkMode_NETWORK_MODE_BRIDGE, "br0"
		}, ""},
		{"bridge missing", agentv1.StepAction_STEP_ACTION_PREFLIGHT, func(n *agentv1.Nic) {
			n.Mode, n.Bridge = flotillav1.NetworkMode_NETWORK_MODE_BRIDGE, "br9"
		}, executor.FaultNetworkUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drv := fake.New(fake.Options{Images: []string{"flotilla-test"}, Bridges: []string{"br0"}})
			e, _ := newExecutor(t, drv, "")
			s := withSpec(actionStep("op-1", "op-1/0/1", "vm-1", c.action))
			s.Kind = flotillav1.OperationKind_OPERATION_KIND_CREATE
			n := nic()
			if c.edit != nil {
				c.edit(n)
			}
			s.Nics = []*agentv1.Nic{n}
			s.Guest = &agentv1.GuestConfig{Hostname: "vm-1", UserData: "#cloud-config\n", SshAuthorizedKeys: []string{"ssh-ed25519 AAAA k"}}
			r := e.Execute(s, epoch)
			if c.fault != "" {
				wantFault(t, r, c.fault)
				if _, defined := drv.NICs("vm-1"); defined {
					t.Fatal("a domain was defined")
				}
				return
			}
			mustSucceed(t, r)
			if c.action != agentv1.StepAction_STEP_ACTION_CREATE {
				return
			}
			got, _ := drv.NICs("vm-1")
			if len(got) != 1 || got[0].IP.String() != n.Ipv4Address || got[0].MAC != n.MacAddress || got[0].Network != "web" {
				t.Fatalf("driver got NICs %+v from %v", got, n)
			}
		})
	}
}
