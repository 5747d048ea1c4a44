package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// newOpsEnv starts one coordinator (heartbeats every 500 ms) and dials it.
func newOpsEnv(t *testing.T) (*opsEnv, *testenv.Coordinator) {
	t.Helper()
	e := &opsEnv{t: t, dir: t.TempDir()}
	coord := testenv.StartCoordinator(t, e.dir, "--agent-heartbeat-interval=500ms")
	e.cl = dialAll(t, []*testenv.Coordinator{coord})
	coord.WaitReady(t, testenv.NewGrpcurl(t, coord.Addr))
	return e, coord
}

// fakeHost starts a fake-hypervisor agent for hostID in its own dir and
// waits until the coordinator lists it.
func (e *opsEnv) fakeHost(coord *testenv.Coordinator, hostID string, extra ...string) *testenv.Agent {
	e.t.Helper()
	return e.fakeHostOf(coord.Addr, coord, hostID, "", extra...)
}

// faultyHost is fakeHost with faults in its hypervisor from the start, as
// fake.FaultsEnv spells them.
func (e *opsEnv) faultyHost(coord *testenv.Coordinator, hostID, faults string, extra ...string) *testenv.Agent {
	e.t.Helper()
	return e.fakeHostOf(coord.Addr, coord, hostID, faults, extra...)
}

// fakeHostOf starts the agent with a list of coordinators, waiting for it
// on via; faults, if any, are its hypervisor's (fake.FaultsEnv).
func (e *opsEnv) fakeHostOf(coords string, via *testenv.Coordinator, hostID, faults string, extra ...string) *testenv.Agent {
	e.t.Helper()
	dir := filepath.Join(e.dir, hostID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	var env []string
	if faults != "" {
		env = []string{fake.FaultsEnv + "=" + faults}
	}
	a := testenv.StartAgentEnv(e.t, dir, coords, hostID, "fake", env, extra...)
	testenv.WaitHost(e.t, testenv.NewGrpcurl(e.t, via.Addr), hostID, 0)
	return a
}

func (e *opsEnv) plainCreate(name string) *pb.Operation {
	e.t.Helper()
	op, err := e.cl.inst(0).CreateInstance(context.Background(), &pb.CreateInstanceRequest{
		Name: name, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return op
}

func (e *opsEnv) instance(id string) *pb.Instance {
	e.t.Helper()
	i, err := e.cl.inst(0).GetInstance(context.Background(), &pb.GetInstanceRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return i
}

// lastOp waits for the instance's latest operation (of kind k) to end.
func (e *opsEnv) opOf(instanceID string, k pb.OperationKind) *pb.Operation {
	e.t.Helper()
	var found *pb.Operation
	testenv.Eventually(e.t, 10*time.Second, "a "+k.String()+" operation on "+instanceID, func() bool {
		r, err := e.cl.ops(0).ListOperations(context.Background(), &pb.ListOperationsRequest{InstanceId: instanceID})
		if err != nil {
			return false
		}
		for _, op := range r.Operations {
			if op.Kind == k {
				found = op
				return true
			}
		}
		return false
	})
	return found
}

func stepNames(op *pb.Operation) (out []string) {
	for _, s := range op.Steps {
		out = append(out, s.Name+":"+s.State.String())
	}
	return out
}

// TestTransientFaultIsRetried: the hypervisor connection drops during a
// start (HYPERVISOR_UNAVAILABLE, twice): the step is tried again after its
// back-off under a new step id and the operation succeeds on the third
// attempt; a fault that is not transient fails at once.
func TestTransientFaultIsRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	a := e.faultyHost(coord, "h-flaky", "fail:Start=2")
	c := e.plainCreate("flaky")
	e.mustSucceed(c)
	e.mustSucceed(e.call("StopInstance", c.InstanceId))
	start := e.call("StartInstance", c.InstanceId)
	done := e.wait(start, 30*time.Second)
	// The preflight, then the start: the start took three attempts.
	if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED || len(done.Steps) != 2 || done.Steps[1].Attempt != 3 {
		t.Fatalf("start with two transient faults: %s %v %v", done.State, done.Error, done.Steps)
	}
	if s := e.settled(c.InstanceId, done.Revision); s != pb.Status_STATUS_RUNNING {
		t.Fatalf("instance after the retried start: %s", s)
	}
	if n := stepRuns(t, a, start.Id); n != 3 {
		t.Fatalf("the start ran %d times on the host, want 3 attempts", n)
	}
}

// TestDrainMovesInstances drains a host with the MOVE policy: a running and
// a stopped instance are moved (stop, disk offered, pulled by the other
// agent over AgentPeerService and verified, started there if it ran,
// removed from the source) and end as they were, on the other host.
func TestDrainMovesInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e := &opsEnv{t: t, dir: t.TempDir()}
	coord := testenv.StartCoordinator(t, e.dir, "--agent-heartbeat-interval=500ms")
	e.cl = dialAll(t, []*testenv.Coordinator{coord})
	g := testenv.NewGrpcurl(t, coord.Addr)
	coord.WaitReady(t, g)
	e.fakeHost(coord, "h-src")
	running, stopped := e.plainCreate("mover-running"), e.plainCreate("mover-stopped")
	e.mustSucceed(running)
	e.mustSucceed(stopped)
	e.mustSucceed(e.call("StopInstance", stopped.InstanceId))
	e.fakeHost(coord, "h-dst")

	// Through grpcurl, as an operator would.
	h := g.MustCall("flotilla.v1.HostService/DrainHost", map[string]any{"id": "h-src", "policy": "DRAIN_POLICY_MOVE", "graceful_timeout": "5s"})
	if testenv.Str(h, "status") != "HOST_STATUS_DRAINING" {
		t.Fatalf("drained host: %v", h)
	}
	for _, c := range []struct {
		op   *pb.Operation
		want pb.Status
		n    int
	}{{running, pb.Status_STATUS_RUNNING, 6}, {stopped, pb.Status_STATUS_STOPPED, 4}} {
		mv := e.opOf(c.op.InstanceId, pb.OperationKind_OPERATION_KIND_MOVE)
		done := e.wait(mv, 60*time.Second)
		if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED || len(done.Steps) != c.n || done.TargetHostId != "h-dst" {
			t.Fatalf("move of %s: %s %v %v", c.op.InstanceId, done.State, done.Error, stepNames(done))
		}
		for _, s := range done.Steps {
			if s.State != pb.StepState_STEP_STATE_SUCCEEDED || s.Attempt != 1 {
				t.Fatalf("move of %s: %v", c.op.InstanceId, stepNames(done))
			}
		}
		inst := e.instance(c.op.InstanceId)
		if inst.HostId != "h-dst" || inst.Status != c.want {
			t.Fatalf("after the move: on %s, %s (want h-dst, %s)", inst.HostId, inst.Status, c.want)
		}
	}
	// Nothing is left on the source, nor did anything become an orphan.
	testenv.Eventually(t, 10*time.Second, "h-src to be empty", func() bool {
		r, err := pb.NewHostServiceClient(e.cl.conns[0]).GetHost(context.Background(), &pb.GetHostRequest{Id: "h-src"})
		return err == nil && r.InstanceCount == 0 && len(r.OrphanDomains) == 0
	})
	r, _ := pb.NewHostServiceClient(e.cl.conns[0]).GetHost(context.Background(), &pb.GetHostRequest{Id: "h-dst"})
	if r.InstanceCount != 2 || len(r.OrphanDomains) != 0 {
		t.Fatalf("h-dst after the drain: %v", r)
	}
}

// TestMoveRollsBackWhenTheCopyFails: the target refuses the disk (a
// permanent fault): the move rolls back (the instance is started again on
// its source) and ends FAILED with the fault, the instance RUNNING where it
// was; nothing is left on the target.
func TestMoveRollsBackWhenTheCopyFails(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	src := e.fakeHost(coord, "h-src")
	c := e.plainCreate("unmovable")
	e.mustSucceed(c)
	e.faultyHost(coord, "h-bad", "fail:ImportDomain=-1:invalid")
	if _, err := pb.NewHostServiceClient(e.cl.conns[0]).DrainHost(context.Background(),
		&pb.DrainHostRequest{Id: "h-src", Policy: pb.DrainPolicy_DRAIN_POLICY_MOVE}); err != nil {
		t.Fatal(err)
	}
	mv := e.opOf(c.InstanceId, pb.OperationKind_OPERATION_KIND_MOVE)
	done := e.wait(mv, 60*time.Second)
	want := []string{"stop-on-source:STEP_STATE_COMPENSATED", "offer-disk:STEP_STATE_SUCCEEDED", "copy-disk-to-target:STEP_STATE_FAILED",
		"start-on-target:STEP_STATE_SKIPPED", "switch-host:STEP_STATE_SKIPPED", "remove-from-source:STEP_STATE_SKIPPED", "start-on-source:STEP_STATE_SUCCEEDED"}
	if done.State != pb.OperationState_OPERATION_STATE_FAILED || done.Error == nil || !slices.Equal(stepNames(done), want) {
		t.Fatalf("failed move: %s %v %v", done.State, done.Error, stepNames(done))
	}
	inst := e.instance(c.InstanceId)
	if inst.HostId != "h-src" || inst.Status != pb.Status_STATUS_RUNNING || inst.Fault == nil {
		t.Fatalf("after the rolled-back move: on %s, %s, fault %v", inst.HostId, inst.Status, inst.Fault)
	}
	if n := stepRuns(t, src, mv.Id); n != 3 {
		t.Fatalf("%d steps ran on the source, want stop, offer and the undoing start", n)
	}
}

// moveEnv is a source host with one running instance and a target host
// whose disk import takes importDelay, drained with the MOVE policy.
type moveEnv struct {
	*opsEnv
	src, dst *testenv.Agent
	inst     *pb.Operation // the instance's create
	move     *pb.Operation
}

func startMove(e *opsEnv, coords string, via *testenv.Coordinator, importDelay time.Duration) *moveEnv {
	e.t.Helper()
	m := &moveEnv{opsEnv: e}
	m.src = e.fakeHostOf(coords, via, "h-src", "")
	m.inst = e.plainCreate("mover")
	e.mustSucceed(m.inst)
	m.dst = e.fakeHostOf(coords, via, "h-dst", "delay:ImportDomain="+importDelay.String())
	if _, err := pb.NewHostServiceClient(e.cl.conns[0]).DrainHost(context.Background(),
		&pb.DrainHostRequest{Id: "h-src", Policy: pb.DrainPolicy_DRAIN_POLICY_MOVE}); err != nil {
		e.t.Fatal(err)
	}
	m.move = e.opOf(m.inst.InstanceId, pb.OperationKind_OPERATION_KIND_MOVE)
	waitStepRunning(e.t, m.dst, m.move.Id) // the import, the first step on the target
	return m
}

// TestAgentKilledMidMove kills the target's agent while it pulls the disk,
// twice. The first time, the restarted agent finds the import not done (no
// domain on the target; issue 19) and runs it again, once. Killed in that
// rerun too, the agent runs it no more: the import is reported interrupted
// (AGENT_RESTARTED), and the move rolls back: what the import may have left
// on the target is removed, and the instance runs on its source again.
func TestAgentKilledMidMove(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	m := startMove(e, coord.Addr, coord, time.Hour)
	m.dst.Kill()
	m.dst.Restart()
	testenv.Eventually(t, 30*time.Second, "the import to run again on the target", func() bool { return stepRuns(t, m.dst, m.move.Id) >= 2 })
	m.dst.Kill()
	m.dst.Restart()
	done := e.wait(m.move, time.Minute)
	if done.State != pb.OperationState_OPERATION_STATE_FAILED || done.Error.GetCode() != "AGENT_RESTARTED" {
		t.Fatalf("move after the target's agent died mid-import twice: %s %v %v", done.State, done.Error, stepNames(done))
	}
	inst := e.instance(m.inst.InstanceId)
	if inst.HostId != "h-src" || inst.Status != pb.Status_STATUS_RUNNING {
		t.Fatalf("after the rolled-back move: on %s, %s", inst.HostId, inst.Status)
	}
	if n := stepRuns(t, m.dst, m.move.Id); n != 3 {
		t.Fatalf("%d steps ran on the target, want the interrupted import, its interrupted rerun and the removal of what they left", n)
	}
}

// TestAgentRestartedMidMove kills the target's agent while it pulls the
// disk and restarts it (without the fault that held the import): the
// import, not done, runs again once and the move completes.
func TestAgentRestartedMidMove(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	m := startMove(e, coord.Addr, coord, time.Hour)
	m.dst.Kill()
	m.dst.Env = nil // the rerun is not held
	m.dst.Restart()
	done := e.wait(m.move, time.Minute)
	if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("move after the target's agent died mid-import: %s %v %v", done.State, done.Error, stepNames(done))
	}
	inst := e.instance(m.inst.InstanceId)
	if inst.HostId != "h-dst" || inst.Status != pb.Status_STATUS_RUNNING {
		t.Fatalf("after the move: on %s, %s", inst.HostId, inst.Status)
	}
	if n := stepRuns(t, m.dst, m.move.Id); n != 3 { // import, its rerun, start
		t.Fatalf("%d steps ran on the target, want the interrupted import, its rerun and the start", n)
	}
}

// TestLeaderKilledMidMove kills the leader while the target pulls the disk:
// the new leader asks the agent about the step instead of re-sending it,
// and the move completes with every step run once.
func TestLeaderKilledMidMove(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e := &opsEnv{t: t, dir: t.TempDir()}
	cs := testenv.StartCluster(t, e.dir, 3)
	byIndex := dialAll(t, cs)
	waitMembers(t, byIndex, 0, 3)
	leader := leaderIndex(t, cs, byIndex)
	e.cl = dialAll(t, []*testenv.Coordinator{cs[(leader+1)%3], cs[(leader+2)%3], cs[leader]})
	addrs := make([]string, len(cs))
	for i, c := range cs {
		addrs[i] = c.Addr
	}
	m := startMove(e, strings.Join(addrs, ","), cs[(leader+1)%3], 3*time.Second)
	cs[leader].Kill()
	done := e.wait(m.move, time.Minute)
	if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("move across a leader change: %s %v %v", done.State, done.Error, stepNames(done))
	}
	for _, s := range done.Steps {
		if s.Attempt != 1 {
			t.Fatalf("a step was attempted again: %v", stepNames(done))
		}
	}
	inst := e.instance(m.inst.InstanceId)
	if inst.HostId != "h-dst" || inst.Status != pb.Status_STATUS_RUNNING {
		t.Fatalf("after the move: on %s, %s", inst.HostId, inst.Status)
	}
	if n := stepRuns(t, m.dst, m.move.Id); n != 2 { // import, start
		t.Fatalf("%d steps ran on the target, want 2", n)
	}
	if n := stepRuns(t, m.src, m.move.Id); n != 3 { // stop, offer, remove
		t.Fatalf("%d steps ran on the source, want 3", n)
	}
}

// TestCancelMidMove cancels a move while the disk is being pulled: once the
// import ends, its undo removes the copy from the target and the instance
// is started again on its source; the move ends CANCELED.
func TestCancelMidMove(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	m := startMove(e, coord.Addr, coord, 3*time.Second)
	asked, err := e.cl.ops(0).CancelOperation(context.Background(), &pb.CancelOperationRequest{Id: m.move.Id})
	if err != nil || !asked.CancelRequested {
		t.Fatalf("cancel mid-move: %v %v", asked, err)
	}
	done := e.wait(m.move, time.Minute)
	want := []string{"stop-on-source:STEP_STATE_COMPENSATED", "offer-disk:STEP_STATE_SUCCEEDED", "copy-disk-to-target:STEP_STATE_COMPENSATED",
		"start-on-target:STEP_STATE_SKIPPED", "switch-host:STEP_STATE_SKIPPED", "remove-from-source:STEP_STATE_SKIPPED",
		"remove-from-target:STEP_STATE_SUCCEEDED", "start-on-source:STEP_STATE_SUCCEEDED"}
	if done.State != pb.OperationState_OPERATION_STATE_CANCELED || !slices.Equal(stepNames(done), want) {
		t.Fatalf("canceled move: %s %v", done.State, stepNames(done))
	}
	inst := e.instance(m.inst.InstanceId)
	if inst.HostId != "h-src" || inst.Status != pb.Status_STATUS_RUNNING {
		t.Fatalf("after the canceled move: on %s, %s", inst.HostId, inst.Status)
	}
	testenv.Eventually(t, 10*time.Second, "nothing left on h-dst", func() bool {
		h, err := pb.NewHostServiceClient(e.cl.conns[0]).GetHost(context.Background(), &pb.GetHostRequest{Id: "h-dst"})
		return err == nil && h.InstanceCount == 0 && len(h.OrphanDomains) == 0
	})
}
