package session_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/session"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

const hostID = "host-a"

func newFake() *fake.Driver {
	return fake.New(fake.Options{
		Capacity: hypervisor.Capacity{VCPUs: 64, MemoryMiB: 262144, DiskGiB: 10000},
		Images:   []string{"flotilla-test"},
	})
}

// testAgent is one agent process: stepstore, executor and session client
// over a fake hypervisor that outlives it.
type testAgent struct {
	t      testing.TB
	store  *stepstore.Store
	exec   *executor.Executor
	client *session.Client
	cancel context.CancelFunc
	done   chan error
}

type agentOption func(*session.Config)

func startAgent(t testing.TB, addr string, drv hypervisor.Driver, stateDir string, opts ...agentOption) *testAgent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	store, err := stepstore.Open(filepath.Join(stateDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	exec, err := executor.New(executor.Config{HostID: hostID, Driver: drv, Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := session.Config{
		Coordinator:  addr,
		HostID:       hostID,
		Driver:       drv,
		Executor:     exec,
		AgentVersion: "test",
		Logger:       log,
		MinBackoff:   10 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	client, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{t: t, store: store, exec: exec, client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- client.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

// stop shuts the agent down as main does; safe to call twice.
func (a *testAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Errorf("Run: %v", err)
		}
	case <-time.After(within):
		a.t.Error("Run did not return")
	}
	a.exec.Close()
	a.client.Close()
	a.store.Close()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func step(opID, inst string, epoch uint64, kind flotillav1.OperationKind) *agentv1.RunStep {
	return &agentv1.RunStep{
		OperationId: opID,
		InstanceId:  inst,
		HostEpoch:   epoch,
		Kind:        kind,
		Deadline:    timestamppb.New(time.Now().Add(time.Minute)),
	}
}

func createStep(opID, inst string, epoch uint64) *agentv1.RunStep {
	s := step(opID, inst, epoch, flotillav1.OperationKind_OPERATION_KIND_CREATE)
	s.Name = "web-1"
	s.Spec = &flotillav1.InstanceSpec{Vcpus: 2, MemoryMib: 1024, DiskGib: 10, Image: "flotilla-test"}
	return s
}

func mustCreate(t testing.TB, drv hypervisor.Driver, id string) {
	t.Helper()
	err := drv.Create(context.Background(), hypervisor.DomainSpec{ID: id, Name: id, VCPUs: 1, MemoryMiB: 512, Image: "flotilla-test"})
	if err != nil {
		t.Fatal(err)
	}
}

func isState(id string, st flotillav1.PowerState) func(*agentv1.DomainState) bool {
	return func(d *agentv1.DomainState) bool { return d.GetInstanceId() == id && d.GetState() == st }
}

func inventoryHas(id string, st flotillav1.PowerState) func(*agentv1.Inventory) bool {
	return func(inv *agentv1.Inventory) bool {
		for _, d := range inv.GetDomains() {
			if isState(id, st)(d) {
				return true
			}
		}
		return false
	}
}

func wantFault(t testing.TB, r *agentv1.StepResult, code string) {
	t.Helper()
	if r.GetSucceeded() || r.GetFault().GetCode() != code {
		t.Fatalf("result %v: want failed with %s", r, code)
	}
	if r.GetFault().GetHostId() != hostID {
		t.Errorf("fault host_id %q, want %q", r.GetFault().GetHostId(), hostID)
	}
}

func TestRegisterCarriesInventory(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	mustCreate(t, drv, "vm-2")
	if err := drv.Pause(context.Background(), "vm-2"); err != nil {
		t.Fatal(err)
	}
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir(), func(c *session.Config) { c.Capacity.VCPUs = 8 })

	s := coord.nextSession(t)
	reg := s.register
	if reg.GetHostId() != hostID || reg.GetHypervisorKind() != "fake" || reg.GetAgentVersion() != "test" {
		t.Errorf("register = %v", reg)
	}
	// VCPUs overridden, the rest from the driver.
	want := &flotillav1.Resources{Vcpus: 8, MemoryMib: 262144, DiskGib: 10000}
	if !proto.Equal(reg.GetCapacity(), want) {
		t.Errorf("capacity %v, want %v", reg.GetCapacity(), want)
	}
	inv := &agentv1.Inventory{Domains: reg.GetInventory()}
	if len(reg.GetInventory()) != 2 ||
		!inventoryHas("vm-1", flotillav1.PowerState_POWER_STATE_RUNNING)(inv) ||
		!inventoryHas("vm-2", flotillav1.PowerState_POWER_STATE_PAUSED)(inv) {
		t.Errorf("inventory %v", reg.GetInventory())
	}
	for _, d := range reg.GetInventory() {
		if d.GetObservedAt() == nil {
			t.Errorf("%s has no observed_at", d.GetInstanceId())
		}
	}
}

func TestHeartbeats(t *testing.T) {
	coord := newTestCoordinator(t, 20*time.Millisecond, time.Hour)
	startAgent(t, coord.Addr(), newFake(), t.TempDir())
	s := coord.nextSession(t)
	for range 3 {
		select {
		case <-s.heartbeats:
		case <-time.After(within):
			t.Fatal("no heartbeat")
		}
	}
}

func TestStepRunsOnceAndResultArrives(t *testing.T) {
	drv := newFake()
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)

	s.send(createStep("op-1", "vm-1", s.epoch))
	r := s.result(t, "op-1")
	if !r.GetSucceeded() || r.GetHostEpoch() != s.epoch {
		t.Fatalf("result %v", r)
	}
	if !isState("vm-1", flotillav1.PowerState_POWER_STATE_RUNNING)(r.GetState()) {
		t.Errorf("state %v, want vm-1 running", r.GetState())
	}
	if n := drv.Calls("Create"); n != 1 {
		t.Errorf("Create called %d times", n)
	}
}

func TestStepSentTwiceRunsOnce(t *testing.T) {
	drv := newFake()
	coord := newTestCoordinator(t, time.Second, time.Hour)
	stateDir := t.TempDir()
	a := startAgent(t, coord.Addr(), drv, stateDir)
	s := coord.nextSession(t)

	// The second copy arrives while the first runs.
	drv.SetDelay("Create", 200*time.Millisecond)
	st := createStep("op-1", "vm-1", s.epoch)
	s.send(st)
	s.send(st)
	first := s.result(t, "op-1")
	if !first.GetSucceeded() {
		t.Fatalf("result %v", first)
	}
	// A copy after it finished gets the recorded result.
	s.send(st)
	if again := s.result(t, "op-1"); !proto.Equal(again, first) {
		t.Errorf("re-sent step: %v, want %v", again, first)
	}
	// After an agent restart on the same state dir, too; the coordinator
	// re-sends under the new epoch.
	a.stop()
	s.waitEnded(t)
	startAgent(t, coord.Addr(), drv, stateDir)
	s2 := coord.nextSession(t)
	if s2.epoch <= s.epoch {
		t.Fatalf("epoch %d after %d", s2.epoch, s.epoch)
	}
	s2.send(createStep("op-1", "vm-1", s2.epoch))
	if again := s2.result(t, "op-1"); !proto.Equal(again, first) {
		t.Errorf("after restart: %v, want %v", again, first)
	}
	if n := drv.Calls("Create"); n != 1 {
		t.Errorf("Create called %d times, want 1", n)
	}
}

// A stop interrupted by an agent restart, with the guest still running, is
// run again; one whose effect is present is reported done; neither runs twice.
func TestInterruptedStepSettledByTheHypervisor(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	stateDir := t.TempDir()
	// A previous agent process recorded the start and died mid-step.
	store, err := stepstore.Open(filepath.Join(stateDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Begin("op-1", stepstore.Step{Kind: flotillav1.OperationKind_OPERATION_KIND_STOP, InstanceID: "vm-1", HostEpoch: 1}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, stateDir)
	s := coord.nextSession(t)
	s.send(step("op-1", "vm-1", s.epoch, flotillav1.OperationKind_OPERATION_KIND_STOP))
	r := s.result(t, "op-1")
	if !r.GetSucceeded() || !isState("vm-1", flotillav1.PowerState_POWER_STATE_SHUT_OFF)(r.GetState()) {
		t.Errorf("result %v, want succeeded with vm-1 shut off", r)
	}
	if n := drv.Calls("Shutdown"); n != 1 {
		t.Errorf("Shutdown called %d times, want 1 (the rerun)", n)
	}
	// The answer is now recorded: it does not change.
	s.send(step("op-1", "vm-1", s.epoch, flotillav1.OperationKind_OPERATION_KIND_STOP))
	if again := s.result(t, "op-1"); !proto.Equal(again, r) {
		t.Errorf("again: %v, want %v", again, r)
	}
	if n := drv.Calls("Shutdown"); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
}

func TestStaleEpochRefused(t *testing.T) {
	drv := newFake()
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)

	s.send(createStep("op-1", "vm-1", s.epoch+1))
	wantFault(t, s.result(t, "op-1"), executor.FaultStaleEpoch)
	if n := drv.Calls("Create"); n != 0 {
		t.Errorf("Create called %d times", n)
	}
	// Refusal is not recorded: the same operation under the right epoch runs.
	s.send(createStep("op-1", "vm-1", s.epoch))
	if r := s.result(t, "op-1"); !r.GetSucceeded() {
		t.Errorf("result %v", r)
	}
}

func TestStepDeadline(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)

	drv.SetDelay("Pause", time.Hour)
	st := step("op-1", "vm-1", s.epoch, flotillav1.OperationKind_OPERATION_KIND_PAUSE)
	st.Deadline = timestamppb.New(time.Now().Add(100 * time.Millisecond))
	s.send(st)
	r := s.result(t, "op-1")
	wantFault(t, r, executor.FaultDeadlineExceeded)
	if !isState("vm-1", flotillav1.PowerState_POWER_STATE_RUNNING)(r.GetState()) {
		t.Errorf("state %v, want vm-1 running attached", r.GetState())
	}
}

func TestPowerOffProducesEvent(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)

	if err := drv.PowerOff("vm-1"); err != nil {
		t.Fatal(err)
	}
	ev := s.event(t, isState("vm-1", flotillav1.PowerState_POWER_STATE_SHUT_OFF))
	if ev.GetObservedAt() == nil {
		t.Error("event without observed_at")
	}
}

func TestResyncCatchesChangesWithoutEvents(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	coord := newTestCoordinator(t, time.Second, 50*time.Millisecond)
	startAgent(t, coord.Addr(), drv, t.TempDir(), func(c *session.Config) { c.IgnoreEvents = true })
	s := coord.nextSession(t)

	s.resync(t, inventoryHas("vm-1", flotillav1.PowerState_POWER_STATE_RUNNING))
	if err := drv.PowerOff("vm-1"); err != nil {
		t.Fatal(err)
	}
	s.resync(t, inventoryHas("vm-1", flotillav1.PowerState_POWER_STATE_SHUT_OFF))
	if n := len(s.events); n != 0 {
		t.Errorf("%d power events with IgnoreEvents", n)
	}
	if n := drv.Calls("Events"); n != 0 {
		t.Errorf("subscribed %d times with IgnoreEvents", n)
	}
}

func TestReconnectAfterCoordinatorRestart(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	mustCreate(t, drv, "vm-2")
	coord := newTestCoordinator(t, time.Second, time.Hour)
	a := startAgent(t, coord.Addr(), drv, t.TempDir())
	s1 := coord.nextSession(t)
	s1.send(createStep("op-0", "vm-0", s1.epoch))
	s1.result(t, "op-0")

	// A step still running when the stream breaks finishes, and its
	// result goes out on the next session. Held until the new session is
	// up: with a delay, a slow restart would let the result out on the old one.
	release := drv.Hold("Pause")
	s1.send(step("op-1", "vm-1", s1.epoch, flotillav1.OperationKind_OPERATION_KIND_PAUSE))
	waitFor(t, func() bool { return drv.Calls("Pause") == 1 })
	coord.restart()

	s2 := coord.nextSession(t)
	release()
	if s2.epoch <= s1.epoch {
		t.Fatalf("epoch %d after %d", s2.epoch, s1.epoch)
	}
	if a.client.Epoch() != s2.epoch {
		waitFor(t, func() bool { return a.client.Epoch() == s2.epoch })
	}
	inv := &agentv1.Inventory{Domains: s2.register.GetInventory()}
	if !inventoryHas("vm-0", flotillav1.PowerState_POWER_STATE_RUNNING)(inv) {
		t.Errorf("re-register inventory %v", inv)
	}
	if r := s2.result(t, "op-1"); !r.GetSucceeded() || r.GetHostEpoch() != s1.epoch {
		t.Errorf("result after reconnect %v", r)
	}

	// Events flow on the new session.
	if err := drv.PowerOff("vm-2"); err != nil {
		t.Fatal(err)
	}
	s2.event(t, isState("vm-2", flotillav1.PowerState_POWER_STATE_SHUT_OFF))
}

func TestEventsResubscribeAndResync(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	mustCreate(t, drv, "vm-2")
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)
	waitFor(t, func() bool { return drv.Calls("Events") == 1 })

	// libvirtd restarts: a change while it is away is only in the resync.
	drv.SetUnavailable(true)
	if err := drv.PowerOff("vm-1"); err != nil {
		t.Fatal(err)
	}
	// At least one resubscription fails before libvirtd is back.
	waitFor(t, func() bool { return drv.Calls("Events") >= 2 })
	drv.SetUnavailable(false)
	s.resync(t, inventoryHas("vm-1", flotillav1.PowerState_POWER_STATE_SHUT_OFF))

	// The subscription breaks on its own (e.g. a dropped connection).
	drv.BreakEvents()
	s.resync(t, inventoryHas("vm-1", flotillav1.PowerState_POWER_STATE_SHUT_OFF))
	if err := drv.PowerOff("vm-2"); err != nil {
		t.Fatal(err)
	}
	s.event(t, isState("vm-2", flotillav1.PowerState_POWER_STATE_SHUT_OFF))
}

func TestShutdownClosesStream(t *testing.T) {
	coord := newTestCoordinator(t, time.Second, time.Hour)
	a := startAgent(t, coord.Addr(), newFake(), t.TempDir())
	s := coord.nextSession(t)
	a.stop()
	s.waitEnded(t)
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(within)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatal("condition not met in time")
		}
	}
}

func TestRegisterCarriesPeerAddress(t *testing.T) {
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), newFake(), t.TempDir(), func(c *session.Config) { c.PeerAddress = "10.0.0.1:7450" })
	if got := coord.nextSession(t).register.GetPeerAddress(); got != "10.0.0.1:7450" {
		t.Errorf("peer_address %q", got)
	}
}

// gatedDriver holds Reboot until the gate opens, so a test decides when a
// long step ends.
type gatedDriver struct {
	*fake.Driver
	entered chan struct{} // one message per Reboot call
	gate    chan struct{}
}

func (g *gatedDriver) Reboot(ctx context.Context, id string, hard bool) error {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Driver.Reboot(ctx, id, hard)
}

// A query is answered at once, even while the step it asks about runs; the
// RUNNING step's result follows the report.
func TestQueryStepWhileStepRuns(t *testing.T) {
	fk := newFake()
	mustCreate(t, fk, "vm-1")
	mustCreate(t, fk, "vm-2")
	drv := &gatedDriver{Driver: fk, entered: make(chan struct{}, 10), gate: make(chan struct{})}
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)

	// A finished step.
	done := step("op-0", "vm-2", s.epoch, flotillav1.OperationKind_OPERATION_KIND_PAUSE)
	done.StepId, done.Action = "op-0/pause/1", agentv1.StepAction_STEP_ACTION_PAUSE
	s.send(done)
	first := s.result(t, "op-0")
	if !first.GetSucceeded() || first.GetStepId() != "op-0/pause/1" {
		t.Fatalf("result %v", first)
	}

	// A long step.
	long := step("op-1", "vm-1", s.epoch, flotillav1.OperationKind_OPERATION_KIND_MOVE)
	long.StepId, long.Action = "op-1/reboot/1", agentv1.StepAction_STEP_ACTION_RESTART
	long.Deadline = timestamppb.New(time.Now().Add(time.Hour))
	s.send(long)
	select {
	case <-drv.entered:
	case <-time.After(within):
		t.Fatal("the step did not start")
	}

	cases := []struct {
		stepID, opID string
		want         agentv1.StepReportState
		result       *agentv1.StepResult
	}{
		{"op-1/reboot/1", "op-1", agentv1.StepReportState_STEP_REPORT_STATE_RUNNING, nil},
		{"op-1/reboot/2", "op-1", agentv1.StepReportState_STEP_REPORT_STATE_UNKNOWN, nil},
		{"op-0/pause/1", "op-0", agentv1.StepReportState_STEP_REPORT_STATE_FINISHED, first},
	}
	for _, c := range cases {
		s.query(c.stepID, c.opID)
		r := s.report(t)
		if r.GetStepId() != c.stepID || r.GetOperationId() != c.opID || r.GetState() != c.want ||
			!proto.Equal(r.GetResult(), c.result) {
			t.Errorf("query %s: %v, want %v with %v", c.stepID, r, c.want, c.result)
		}
	}
	if len(s.results) != 0 {
		t.Errorf("a result arrived while the step still runs: %v", <-s.results)
	}

	// The step ends: its result follows, and a query now finds it finished.
	close(drv.gate)
	r := s.result(t, "op-1")
	if !r.GetSucceeded() || r.GetStepId() != "op-1/reboot/1" || fk.Calls("Reboot") != 1 {
		t.Fatalf("result %v", r)
	}
	s.query("op-1/reboot/1", "op-1")
	if rep := s.report(t); rep.GetState() != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED || !proto.Equal(rep.GetResult(), r) {
		t.Errorf("after the end: %v", rep)
	}
}

// Register says which networks the host serves, and every session start
// and every broken event subscription first has the driver put back the
// networks its domains need.
func TestRegisterCarriesNetworksAndResyncsThem(t *testing.T) {
	drv := fake.New(fake.Options{Images: []string{"flotilla-test"}, Bridges: []string{"br0", "br1"}})
	nic := hypervisor.NIC{
		Network: "web", Mode: hypervisor.ModeNAT, Prefix: netip.MustParsePrefix("198.19.3.0/24"),
		Gateway: netip.MustParseAddr("198.19.3.1"), IP: netip.MustParseAddr("198.19.3.5"), MAC: "52:54:00:00:03:05",
	}
	err := drv.Create(context.Background(), hypervisor.DomainSpec{ID: "vm-1", VCPUs: 1, MemoryMiB: 512, Image: "flotilla-test", NICs: []hypervisor.NIC{nic}})
	if err != nil {
		t.Fatal(err)
	}
	drv.RemoveNetwork("web") // e.g. libvirtd lost it while the agent was down
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())

	s := coord.nextSession(t)
	if !s.register.GetManagedNetworks() || !slices.Equal(s.register.GetBridges(), []string{"br0", "br1"}) {
		t.Fatalf("register says managed %v, bridges %v", s.register.GetManagedNetworks(), s.register.GetBridges())
	}
	if _, ok := drv.Network("web"); !ok {
		t.Fatal("network web not put back before Register")
	}

	drv.RemoveNetwork("web")
	drv.BreakEvents()
	waitFor(t, func() bool { _, ok := drv.Network("web"); return ok })
}
