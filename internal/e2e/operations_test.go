package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// stepKind is one kind of step: how to bring an instance to where the step
// applies, how to start the step, and which hypervisor call it makes.
type stepKind struct {
	name   string
	method string // the fake hypervisor's method the step calls
	prep   []string
	act    string
}

var stepKinds = []stepKind{
	{"create", "Create", nil, "CreateInstance"},
	{"start", "Start", []string{"StopInstance"}, "StartInstance"},
	{"stop", "Shutdown", nil, "StopInstance"},
	{"pause", "Pause", nil, "PauseInstance"},
	{"unpause", "Resume", []string{"PauseInstance"}, "UnpauseInstance"},
	{"suspend", "Save", nil, "SuspendInstance"},
	{"resume", "Start", []string{"SuspendInstance"}, "ResumeInstance"},
	{"restart", "Reboot", nil, "RestartInstance"},
	{"delete", "Delete", nil, "DeleteInstance"},
}

// opsEnv drives coordinators and per-kind fake agents with the gRPC client.
type opsEnv struct {
	t   *testing.T
	cl  *clients
	dir string
}

func (e *opsEnv) call(method, id string) *pb.Operation {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := e.cl.inst(0)
	var op *pb.Operation
	var err error
	switch method {
	case "StartInstance":
		op, err = c.StartInstance(ctx, &pb.StartInstanceRequest{Id: id})
	case "StopInstance":
		op, err = c.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, Force: true})
	case "PauseInstance":
		op, err = c.PauseInstance(ctx, &pb.PauseInstanceRequest{Id: id})
	case "UnpauseInstance":
		op, err = c.UnpauseInstance(ctx, &pb.UnpauseInstanceRequest{Id: id})
	case "SuspendInstance":
		op, err = c.SuspendInstance(ctx, &pb.SuspendInstanceRequest{Id: id})
	case "ResumeInstance":
		op, err = c.ResumeInstance(ctx, &pb.ResumeInstanceRequest{Id: id})
	case "RestartInstance":
		op, err = c.RestartInstance(ctx, &pb.RestartInstanceRequest{Id: id})
	case "DeleteInstance":
		op, err = c.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id})
	default:
		e.t.Fatalf("unknown method %s", method)
	}
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, id, err)
	}
	return op
}

func (e *opsEnv) create(label string) *pb.Operation {
	e.t.Helper()
	op, err := e.cl.inst(0).CreateInstance(context.Background(), &pb.CreateInstanceRequest{
		Name: "op-" + label, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
		Placement: &pb.Placement{HostLabels: map[string]string{"kind": label}},
	})
	if err != nil {
		e.t.Fatalf("create on %s: %v", label, err)
	}
	return op
}

// startKind starts a fake agent labelled for one kind whose hypervisor call
// for that kind takes delay, and returns it.
func (e *opsEnv) startKind(k stepKind, coords string, delay time.Duration) *testenv.Agent {
	e.t.Helper()
	dir := filepath.Join(e.dir, k.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	faults := fmt.Sprintf("%s=delay:%s=%s", fake.FaultsEnv, k.method, delay)
	a := testenv.StartAgentEnv(e.t, dir, coords, "h-"+k.name, "fake", []string{faults}, "--label=kind="+k.name)
	testenv.WaitHost(e.t, testenv.NewGrpcurl(e.t, strings.Split(coords, ",")[0]), "h-"+k.name, 0)
	return a
}

// prepare creates an instance on the kind's host, brings it to where the
// kind's step applies, and starts that step.
func (e *opsEnv) prepare(k stepKind) *pb.Operation {
	e.t.Helper()
	if k.act == "CreateInstance" {
		return e.create(k.name)
	}
	c := e.create(k.name)
	e.mustSucceed(c)
	for _, p := range k.prep {
		e.mustSucceed(e.call(p, c.InstanceId))
	}
	return e.call(k.act, c.InstanceId)
}

func (e *opsEnv) wait(first *pb.Operation, limit time.Duration) *pb.Operation {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		op, err := e.cl.ops(0).WaitOperation(ctx, &pb.WaitOperationRequest{Id: first.Id, MinRevision: first.Revision})
		if err != nil {
			e.t.Fatalf("operation %s not done within %s: %v", first.Id, limit, err)
		}
		if op.Done {
			return op
		}
	}
}

func (e *opsEnv) mustSucceed(first *pb.Operation) {
	e.t.Helper()
	if op := e.wait(first, 30*time.Second); op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		e.t.Fatalf("setup operation %s %s: %s %v", op.Id, op.Kind, op.State, op.Error)
	}
}

// stepRuns counts how many times the agent began running an operation's
// step, across every restart (the log file is appended to).
func stepRuns(t *testing.T, a *testenv.Agent, opID string) int {
	t.Helper()
	b, err := os.ReadFile(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		// The preflight a create or a start runs first is not counted: it
		// changes nothing, and the step these tests watch comes after it.
		if strings.Contains(line, `"msg":"running step"`) && strings.Contains(line, opID) &&
			!strings.Contains(line, `"action":"STEP_ACTION_PREFLIGHT"`) {
			n++
		}
	}
	return n
}

func waitStepRunning(t *testing.T, a *testenv.Agent, opID string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "the step of "+opID+" to run on the agent", func() bool { return stepRuns(t, a, opID) > 0 })
}

// settled reports that the instance shows a status that is not in flight.
func (e *opsEnv) settled(id string, rev int64) pb.Status {
	e.t.Helper()
	inst, err := e.cl.inst(0).GetInstance(context.Background(), &pb.GetInstanceRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	switch inst.Status {
	case pb.Status_STATUS_CREATING, pb.Status_STATUS_STARTING, pb.Status_STATUS_STOPPING, pb.Status_STATUS_REBOOTING,
		pb.Status_STATUS_HARD_REBOOTING, pb.Status_STATUS_PAUSING, pb.Status_STATUS_UNPAUSING, pb.Status_STATUS_SUSPENDING,
		pb.Status_STATUS_RESUMING, pb.Status_STATUS_DELETING, pb.Status_STATUS_MOVING:
		e.t.Errorf("instance %s left in transitional %s", id, inst.Status)
	}
	return inst.Status
}

// TestAgentKilledMidStep kills the agent (SIGKILL) while each kind of step
// runs on it. The fake hypervisor lives in the agent's process, so the
// restarted agent finds no domain: a step that cannot say from that what
// it did is not run again (FAILED, AGENT_RESTARTED); a create and a delete
// can (no domain: undone, then run again; issue 19), and their rerun hangs
// as the first run did, to the deadline. Either way the operation ends
// within its deadline plus a heartbeat, and the instance shows a settled
// status.
func TestAgentKilledMidStep(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	for _, k := range stepKinds {
		t.Run(k.name, func(t *testing.T) {
			e.t = t
			a := e.startKind(k, coord.Addr, time.Hour)
			op := e.prepare(k)
			waitStepRunning(t, a, op.Id)
			a.Kill()
			a.Restart()
			done := e.wait(op, time.Until(op.Deadline.AsTime())+2*time.Second)
			code, runs := "AGENT_RESTARTED", 1
			if k.name == "create" || k.name == "delete" {
				code, runs = "DEADLINE_EXCEEDED", 2
			}
			if done.State != pb.OperationState_OPERATION_STATE_FAILED || done.Error.GetCode() != code {
				t.Fatalf("operation after the agent died mid-step: %s %v, want FAILED %s", done.State, done.Error, code)
			}
			st := e.settled(op.InstanceId, done.Revision)
			if n := stepRuns(t, a, op.Id); n != runs {
				t.Fatalf("the step ran %d times on the host, want %d", n, runs)
			}
			t.Logf("%s: %s, fault %s, instance %s", k.name, done.State, done.Error.GetCode(), st)
		})
	}
}

// TestStepPastItsDeadline: a step that hangs on the host ends at the
// operation's deadline with fault DEADLINE_EXCEEDED, and the instance
// settles; nothing runs the step again.
func TestStepPastItsDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e := &opsEnv{t: t, dir: t.TempDir()}
	var flags []string
	for _, k := range []string{"pause", "suspend", "restart"} {
		flags = append(flags, "--operation-deadline="+k+"=2s")
	}
	coord := testenv.StartCoordinator(t, e.dir, append(flags, "--agent-heartbeat-interval=500ms")...)
	e.cl = dialAll(t, []*testenv.Coordinator{coord})
	coord.WaitReady(t, testenv.NewGrpcurl(t, coord.Addr))
	for _, k := range []stepKind{stepKinds[3], stepKinds[5], stepKinds[7]} {
		t.Run(k.name, func(t *testing.T) {
			e.t = t
			a := e.startKind(k, coord.Addr, time.Hour)
			op := e.prepare(k)
			done := e.wait(op, 2*time.Second+6*time.Second)
			if done.State != pb.OperationState_OPERATION_STATE_FAILED || done.Error.GetCode() != "DEADLINE_EXCEEDED" {
				t.Fatalf("a step past its deadline: %s %v", done.State, done.Error)
			}
			if late := done.EndTime.AsTime().Sub(done.Deadline.AsTime()); late > 6*time.Second {
				t.Fatalf("ended %s after its deadline", late)
			}
			e.settled(op.InstanceId, done.Revision)
			if n := stepRuns(t, a, op.Id); n != 1 {
				t.Fatalf("the step ran %d times", n)
			}
		})
	}
}

// TestLeaderKilledMidStep kills the leader while each kind of step runs on
// the agent. The agent finishes the step once and reports it to the new
// leader, which records the success.
func TestLeaderKilledMidStep(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e := &opsEnv{t: t, dir: t.TempDir()}
	cs := testenv.StartCluster(t, e.dir, 3)
	byIndex := dialAll(t, cs) // index i talks to cs[i]
	waitMembers(t, byIndex, 0, 3)
	addrs := make([]string, len(cs))
	for i, c := range cs {
		addrs[i] = c.Addr
	}
	for _, k := range stepKinds {
		t.Run(k.name, func(t *testing.T) {
			e.t = t
			// Client calls go to the first server that is not about to be killed.
			leader := leaderIndex(t, cs, byIndex)
			order := []*testenv.Coordinator{cs[(leader+1)%3], cs[(leader+2)%3], cs[leader]}
			e.cl = dialAll(t, order)
			a := e.startKind(k, strings.Join(addrs, ","), 3*time.Second)
			op := e.prepare(k)
			waitStepRunning(t, a, op.Id)
			cs[leader].Kill()
			done := e.wait(op, time.Until(op.Deadline.AsTime())+5*time.Second)
			if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Fatalf("operation across a leader change: %s %v", done.State, done.Error)
			}
			e.settled(op.InstanceId, done.Revision)
			if n := stepRuns(t, a, op.Id); n != 1 {
				t.Fatalf("the step ran %d times", n)
			}
			cs[leader].Restart()
			waitMembers(t, byIndex, (leader+1)%3, 3)
			converged(t, byIndex)
		})
	}
}

// TestCancelAtEachStep cancels an operation while it waits for capacity,
// while it waits for its host, and while it runs there (rolled back), and
// is refused for a step that cannot be undone.
func TestCancelAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	ctx := context.Background()
	cancelOp := func(id string) (*pb.Operation, error) {
		return e.cl.ops(0).CancelOperation(ctx, &pb.CancelOperationRequest{Id: id})
	}

	// Waiting for capacity (no host has the label): canceled, and the
	// instance that never existed is a tombstone.
	waiting := e.create("nowhere")
	canceled, err := cancelOp(waiting.Id)
	if err != nil || canceled.State != pb.OperationState_OPERATION_STATE_CANCELED {
		t.Fatalf("cancel while waiting for capacity: %v %v", canceled, err)
	}
	if s := e.settled(waiting.InstanceId, canceled.Revision); s != pb.Status_STATUS_DELETED {
		t.Fatalf("after canceling a waiting create: %s", s)
	}

	// Waiting for its host (the agent is gone): canceled, and the instance
	// keeps what the user wanted before.
	k := stepKinds[3] // pause
	a := e.startKind(k, coord.Addr, time.Hour)
	c := e.create(k.name)
	e.mustSucceed(c)
	a.Stop()
	testenv.Eventually(t, 10*time.Second, "the host to be disconnected", func() bool {
		h, err := pb.NewHostServiceClient(e.cl.conns[0]).GetHost(ctx, &pb.GetHostRequest{Id: "h-" + k.name})
		return err == nil && h.Status == pb.HostStatus_HOST_STATUS_DISCONNECTED
	})
	del := e.call("DeleteInstance", c.InstanceId) // the only action an unreachable host's instance allows
	if op, err := cancelOp(del.Id); err != nil || op.State != pb.OperationState_OPERATION_STATE_CANCELED || op.Error.GetCode() != "CANCELED" {
		t.Fatalf("cancel while waiting for the host: %v %v", op, err)
	}
	inst, _ := e.cl.inst(0).GetInstance(ctx, &pb.GetInstanceRequest{Id: c.InstanceId})
	if inst.DesiredState != pb.DesiredState_DESIRED_STATE_RUNNING || inst.CurrentOperationId != "" {
		t.Fatalf("instance after canceling its delete: %v", inst)
	}

	// Running on its host: the cancel is recorded, the running step ends,
	// and its undo runs (unpause): the operation ends CANCELED and the
	// instance is as it was, each step having run once.
	slow := stepKind{"slowpause", "Pause", nil, "PauseInstance"}
	sa := e.startKind(slow, coord.Addr, 3*time.Second)
	op := e.prepare(slow)
	waitStepRunning(t, sa, op.Id)
	asked, err := cancelOp(op.Id)
	if err != nil || !asked.CancelRequested || asked.Done {
		t.Fatalf("cancel while running on the host: %v %v", asked, err)
	}
	done := e.wait(op, 20*time.Second)
	if done.State != pb.OperationState_OPERATION_STATE_CANCELED || len(done.Steps) != 2 ||
		done.Steps[0].State != pb.StepState_STEP_STATE_COMPENSATED || done.Steps[1].Name != "unpause-domain" || done.Steps[1].State != pb.StepState_STEP_STATE_SUCCEEDED {
		t.Fatalf("the pause after a cancel while it ran: %s %v", done.State, done.Steps)
	}
	if s := e.settled(op.InstanceId, done.Revision); s != pb.Status_STATUS_RUNNING {
		t.Fatalf("after the rolled-back pause: %s", s)
	}
	if n := stepRuns(t, sa, op.Id); n != 2 {
		t.Fatalf("%d steps ran for the canceled pause, want the pause and its undo", n)
	}

	// A step that cannot be undone (delete) is refused while it runs, and
	// the refusal says why.
	slowDel := stepKind{"slowdelete", "Delete", nil, "DeleteInstance"}
	da := e.startKind(slowDel, coord.Addr, 3*time.Second)
	del = e.prepare(slowDel)
	waitStepRunning(t, da, del.Id)
	if _, err := cancelOp(del.Id); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "cannot be undone") {
		t.Fatalf("cancel of a running delete: %v", err)
	}
	if done := e.wait(del, 20*time.Second); done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("the delete after a refused cancel: %s %v", done.State, done.Error)
	}
}
