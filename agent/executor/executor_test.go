package executor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

const epoch = 7

func newFake() *fake.Driver {
	return fake.New(fake.Options{Images: []string{"flotilla-test"}})
}

func newExecutor(t *testing.T, drv hypervisor.Driver, dbPath string) (*executor.Executor, *stepstore.Store) {
	t.Helper()
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "agent.db")
	}
	store, err := stepstore.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	e, err := executor.New(executor.Config{
		HostID: "host-a", Driver: drv, Store: store,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { e.Close(); store.Close() }) })
	return e, store
}

func step(op, inst string, kind flotillav1.OperationKind) *agentv1.RunStep {
	return &agentv1.RunStep{
		OperationId: op, InstanceId: inst, HostEpoch: epoch, Kind: kind,
		Deadline: timestamppb.New(time.Now().Add(time.Minute)),
	}
}

func create(op, inst string) *agentv1.RunStep {
	s := step(op, inst, flotillav1.OperationKind_OPERATION_KIND_CREATE)
	s.Name = inst
	s.Spec = &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "flotilla-test"}
	return s
}

func mustSucceed(t *testing.T, r *agentv1.StepResult) {
	t.Helper()
	if r == nil || !r.GetSucceeded() {
		t.Fatalf("result %v, want success", r)
	}
}

func TestKinds(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	K := flotillav1.OperationKind_value
	seq := []struct {
		kind   string
		method string
		after  flotillav1.PowerState
	}{
		{"OPERATION_KIND_CREATE", "Create", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_RESTART", "Reboot", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_HARD_RESTART", "Reboot", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_PAUSE", "Pause", flotillav1.PowerState_POWER_STATE_PAUSED},
		{"OPERATION_KIND_UNPAUSE", "Resume", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_SUSPEND", "Save", flotillav1.PowerState_POWER_STATE_SAVED_TO_DISK},
		{"OPERATION_KIND_RESUME", "Start", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_STOP", "Shutdown", flotillav1.PowerState_POWER_STATE_SHUT_OFF},
		{"OPERATION_KIND_START", "Start", flotillav1.PowerState_POWER_STATE_RUNNING},
		{"OPERATION_KIND_DELETE", "Delete", flotillav1.PowerState_POWER_STATE_NO_DOMAIN},
	}
	for i, c := range seq {
		before := drv.Calls(c.method)
		s := step(fmt.Sprintf("op-%d", i), "vm-1", flotillav1.OperationKind(K[c.kind]))
		if c.kind == "OPERATION_KIND_CREATE" {
			s = create(s.OperationId, "vm-1")
		}
		if c.kind == "OPERATION_KIND_STOP" {
			s.GracefulTimeout = durationpb.New(time.Second)
		}
		r := e.Execute(s, epoch)
		mustSucceed(t, r)
		if drv.Calls(c.method) != before+1 {
			t.Errorf("%s did not call %s", c.kind, c.method)
		}
		if r.GetState().GetInstanceId() != "vm-1" || r.GetState().GetState() != c.after {
			t.Errorf("%s: state %v, want %v", c.kind, r.GetState(), c.after)
		}
		if r.GetHostEpoch() != epoch || r.GetOperationId() != s.OperationId {
			t.Errorf("%s: result %v", c.kind, r)
		}
	}
}

func TestFaultCodes(t *testing.T) {
	cases := []struct {
		err  error
		code string
	}{
		{hypervisor.ErrInvalidSpec, executor.FaultInvalidSpec},
		{hypervisor.ErrImageNotFound, executor.FaultImageNotFound},
		{hypervisor.ErrInvalidState, executor.FaultInvalidState},
		{hypervisor.ErrNotFound, executor.FaultDomainNotFound},
		{hypervisor.ErrUnavailable, executor.FaultHypervisorUnavailable},
		{context.DeadlineExceeded, executor.FaultDeadlineExceeded},
		{errors.New("disk on fire"), executor.FaultHypervisorError},
	}
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	for i, c := range cases {
		drv.InjectFault("Create", fmt.Errorf("wrapped: %w", c.err), 1)
		r := e.Execute(create(fmt.Sprintf("op-%d", i), "vm-1"), epoch)
		f := r.GetFault()
		if r.GetSucceeded() || f.GetCode() != c.code || f.GetHostId() != "host-a" ||
			f.GetMessage() != fmt.Errorf("wrapped: %w", c.err).Error() || f.GetTime() == nil {
			t.Errorf("%v: result %v, want fault %s", c.err, r, c.code)
		}
		if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_NO_DOMAIN {
			t.Errorf("%v: state %v not attached", c.err, r.GetState())
		}
	}
}

func TestBadSteps(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	s := create("op-1", "vm-1")
	s.Spec.Vcpus = -1
	if r := e.Execute(s, epoch); r.GetFault().GetCode() != executor.FaultInvalidSpec {
		t.Errorf("negative vcpus: %v", r)
	}
	if r := e.Execute(step("op-2", "vm-1", flotillav1.OperationKind(99)), epoch); r.GetFault().GetCode() != executor.FaultInvalidStep {
		t.Errorf("unknown kind: %v", r)
	}
	if n := drv.Calls("Create"); n != 0 {
		t.Errorf("Create called %d times", n)
	}
}

func TestStaleEpoch(t *testing.T) {
	drv := newFake()
	e, store := newExecutor(t, drv, "")
	r := e.Execute(create("op-1", "vm-1"), epoch+1)
	if r.GetFault().GetCode() != executor.FaultStaleEpoch || r.GetHostEpoch() != epoch {
		t.Fatalf("result %v", r)
	}
	if rec, _ := store.Get("op-1"); rec.State != stepstore.Unknown {
		t.Errorf("refusal recorded: %v", rec.State)
	}
	if drv.Calls("Create") != 0 {
		t.Error("driver called")
	}
}

// tracker counts, per instance, the driver calls in flight.
type tracker struct {
	hypervisor.Driver
	mu       sync.Mutex
	inFlight map[string]int
	maxSame  int
}

func (tr *tracker) Reboot(ctx context.Context, id string, hard bool) error {
	tr.mu.Lock()
	tr.inFlight[id]++
	tr.maxSame = max(tr.maxSame, tr.inFlight[id])
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		tr.inFlight[id]--
		tr.mu.Unlock()
	}()
	return tr.Driver.Reboot(ctx, id, hard)
}

func TestOneStepPerInstance(t *testing.T) {
	drv := newFake()
	tr := &tracker{Driver: drv, inFlight: map[string]int{}}
	e, _ := newExecutor(t, tr, "")
	for _, id := range []string{"vm-1", "vm-2"} {
		mustSucceed(t, e.Execute(create("create-"+id, id), epoch))
	}
	drv.SetDelay("Reboot", 20*time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		id := []string{"vm-1", "vm-2"}[i%2]
		wg.Go(func() {
			mustSucceed(t, e.Execute(step(fmt.Sprintf("op-%d", i), id, flotillav1.OperationKind_OPERATION_KIND_RESTART), epoch))
		})
	}
	wg.Wait()
	if tr.maxSame != 1 {
		t.Errorf("%d steps ran at once on one instance", tr.maxSame)
	}
	if drv.Calls("Reboot") != 8 {
		t.Errorf("Reboot called %d times", drv.Calls("Reboot"))
	}
}

func TestDuplicateWhileRunning(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	// Held, not delayed: the duplicate must arrive while the first runs,
	// however long the machine takes to get there.
	release := drv.Hold("Create")
	first := make(chan *agentv1.StepResult, 1)
	go func() { first <- e.Execute(create("op-1", "vm-1"), epoch) }()
	waitFor(t, func() bool { return drv.Calls("Create") == 1 })
	if r := e.Execute(create("op-1", "vm-1"), epoch); r != nil {
		t.Errorf("duplicate returned %v, want nil (the first call answers)", r)
	}
	release()
	mustSucceed(t, <-first)
	if drv.Calls("Create") != 1 {
		t.Errorf("Create called %d times", drv.Calls("Create"))
	}
}

func TestDeadline(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	drv.SetDelay("Create", time.Hour)
	s := create("op-1", "vm-1")
	s.Deadline = timestamppb.New(time.Now().Add(50 * time.Millisecond))
	if r := e.Execute(s, epoch); r.GetFault().GetCode() != executor.FaultDeadlineExceeded {
		t.Errorf("result %v", r)
	}
	// A deadline already past: the driver is not called.
	s = create("op-2", "vm-2")
	s.Deadline = timestamppb.New(time.Now().Add(-time.Second))
	before := drv.Calls("Create")
	if r := e.Execute(s, epoch); r.GetFault().GetCode() != executor.FaultDeadlineExceeded {
		t.Errorf("result %v", r)
	}
	if drv.Calls("Create") != before {
		t.Error("driver called after the deadline")
	}
}

// A forced STOP whose grace outlasts its deadline still powers off in time.
func TestForcedStopWithinDeadline(t *testing.T) {
	drv := newFake()
	e, _ := newExecutor(t, drv, "")
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))
	drv.SetIgnoreACPI("vm-1", true)
	s := step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_STOP)
	s.GracefulTimeout = durationpb.New(time.Hour)
	s.Force = true
	// Long enough that the journal's fsync and the scheduling of a loaded
	// machine cannot use it all before the driver is called; the test
	// takes about this long.
	s.Deadline = timestamppb.New(time.Now().Add(2 * time.Second))
	r := e.Execute(s, epoch)
	mustSucceed(t, r)
	if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_SHUT_OFF {
		t.Errorf("state %v", r.GetState())
	}
	// Without force the guest keeps running and the step fails.
	mustSucceed(t, e.Execute(step("op-2", "vm-1", flotillav1.OperationKind_OPERATION_KIND_START), epoch))
	s = step("op-3", "vm-1", flotillav1.OperationKind_OPERATION_KIND_STOP)
	s.GracefulTimeout = durationpb.New(100 * time.Millisecond)
	if r := e.Execute(s, epoch); r.GetFault().GetCode() != executor.FaultDeadlineExceeded {
		t.Errorf("unforced stop of a guest ignoring ACPI: %v", r)
	}
}

// A step cut short by the agent's shutdown, whose effect the hypervisor
// shows absent, is run again (once) by the next agent process.
func TestShutdownMidStepThenRestart(t *testing.T) {
	drv := newFake()
	db := filepath.Join(t.TempDir(), "agent.db")
	e, store := newExecutor(t, drv, db)
	mustSucceed(t, e.Execute(create("op-0", "vm-1"), epoch))
	drv.SetDelay("Pause", time.Hour)
	res := make(chan *agentv1.StepResult, 1)
	go func() { res <- e.Execute(step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_PAUSE), epoch) }()
	waitFor(t, func() bool { return drv.Calls("Pause") == 1 })
	e.Close()
	if r := <-res; r != nil {
		t.Errorf("abandoned step returned %v", r)
	}
	if rec, _ := store.Get("op-1"); rec.State != stepstore.Started {
		t.Errorf("record %v, want started", rec.State)
	}
	store.Close()

	drv.SetDelay("Pause", 0)
	e2, _ := newExecutor(t, drv, db)
	again := step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_PAUSE)
	// Under the old epoch it is refused: it would run, and only the
	// current session may run a step.
	if r := e2.Execute(again, epoch+1); r.GetFault().GetCode() != executor.FaultStaleEpoch {
		t.Errorf("stale re-send: %v", r)
	}
	again.HostEpoch = epoch + 1
	r := e2.Execute(again, epoch+1)
	mustSucceed(t, r)
	if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_PAUSED {
		t.Errorf("result %v", r)
	}
	if drv.Calls("Pause") != 2 {
		t.Errorf("Pause called %d times, want 2 (the interrupted call and its rerun)", drv.Calls("Pause"))
	}
}

func TestPowerStateMapping(t *testing.T) {
	for h, want := range map[hypervisor.PowerState]flotillav1.PowerState{
		hypervisor.PowerRunning:      flotillav1.PowerState_POWER_STATE_RUNNING,
		hypervisor.PowerPaused:       flotillav1.PowerState_POWER_STATE_PAUSED,
		hypervisor.PowerShuttingDown: flotillav1.PowerState_POWER_STATE_SHUTTING_DOWN,
		hypervisor.PowerShutOff:      flotillav1.PowerState_POWER_STATE_SHUT_OFF,
		hypervisor.PowerCrashed:      flotillav1.PowerState_POWER_STATE_CRASHED,
		hypervisor.PowerSavedToDisk:  flotillav1.PowerState_POWER_STATE_SAVED_TO_DISK,
		hypervisor.PowerNoDomain:     flotillav1.PowerState_POWER_STATE_NO_DOMAIN,
		hypervisor.PowerUnknown:      flotillav1.PowerState_POWER_STATE_UNKNOWN,
		"something-new":              flotillav1.PowerState_POWER_STATE_UNKNOWN,
	} {
		if got := executor.PowerState(h); got != want {
			t.Errorf("%s -> %v, want %v", h, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatal("condition not met in time")
		}
	}
}
