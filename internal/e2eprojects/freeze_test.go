package e2eprojects

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// bound is how long a condition may take on a loaded machine.
const bound = 90 * time.Second

// env is a coordinator charging every 100ms, one agent, and clients.
type env struct {
	t        *testing.T
	inst     pb.InstanceServiceClient
	ops      pb.OperationServiceClient
	projects pb.ProjectServiceClient
}

func newEnv(t *testing.T, hypervisor, hostID string) *env {
	t.Helper()
	dir := t.TempDir()
	coord := testenv.StartCoordinator(t, dir, "--billing-interval=100ms", "--agent-heartbeat-interval=500ms")
	g := testenv.NewGrpcurl(t, coord.Addr)
	coord.WaitReady(t, g)
	testenv.StartAgent(t, dir, coord.Addr, hostID, hypervisor)
	testenv.WaitHost(t, g, hostID, 0)
	conn, err := grpc.NewClient(coord.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{t: t, inst: pb.NewInstanceServiceClient(conn), ops: pb.NewOperationServiceClient(conn), projects: pb.NewProjectServiceClient(conn)}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) get(id string) *pb.Instance {
	e.t.Helper()
	i, err := e.inst.GetInstance(e.ctx(), &pb.GetInstanceRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return i
}

// mustSucceed waits for an operation to end and fails unless it succeeded.
func (e *env) mustSucceed(opID string) {
	e.t.Helper()
	for {
		op, err := e.ops.WaitOperation(e.ctx(), &pb.WaitOperationRequest{Id: opID})
		if err != nil {
			e.t.Fatal(err)
		}
		if op.Done {
			if op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				e.t.Fatalf("operation %s ended %v: %v", opID, op.State, op.Error)
			}
			return
		}
	}
}

func (e *env) waitStatus(id string, want pb.Status) {
	e.t.Helper()
	testenv.Eventually(e.t, bound, id+" to be "+want.String(), func() bool { return e.get(id).Status == want })
}

// freezeAndThaw: a billed project whose balance is worth a few
// milliseconds of one running vCPU; its instance comes up, the balance
// runs dry, the project freezes and the instance is FROZEN with its guest
// paused (check, for the hypervisor's own word) and every user action
// refused; a top-up unfreezes it and the guest runs again (check again).
func freezeAndThaw(t *testing.T, e *env, spec *pb.InstanceSpec, check func(id string, paused bool)) {
	// The project API answers once the cluster is at log version 7.
	var created *pb.Project
	testenv.Eventually(t, bound, "the project to be created", func() bool {
		p, err := e.projects.CreateProject(e.ctx(), &pb.CreateProjectRequest{Project: &pb.Project{Name: "pay", Billed: true,
			BalanceMilli: 200, PricesMilli: map[string]int64{"hardware-and-software": 3_600_000, "instance-usage": 3_600_000}}})
		if status.Code(err) == codes.FailedPrecondition {
			return false // not every server reads projects yet
		}
		if err != nil {
			t.Fatal(err)
		}
		created = p
		return true
	})
	if created.Frozen {
		t.Fatalf("a new project with a balance is frozen: %v", created)
	}
	op, err := e.inst.CreateInstance(e.ctx(), &pb.CreateInstanceRequest{Name: "tenant-vm", Project: "pay", Spec: spec, RequestId: "create-tenant-vm"})
	if err != nil {
		t.Fatal(err)
	}
	id := op.InstanceId
	e.mustSucceed(op.Id)
	// 200 milli at 1 milli per millisecond of a running vCPU: gone within
	// a charge or two once it runs.
	e.waitStatus(id, pb.Status_STATUS_FROZEN)
	p, err := e.projects.GetProject(e.ctx(), &pb.GetProjectRequest{Name: "pay"})
	if err != nil || !p.Frozen || p.FrozenByAdmin || p.BalanceMilli > 0 {
		t.Fatalf("project after its balance ran out: %v, %v", p, err)
	}
	testenv.Eventually(t, bound, "the frozen guest to be paused", func() bool { return e.get(id).PowerState == pb.PowerState_POWER_STATE_PAUSED })
	check(id, true)
	if got := e.get(id); got.Status != pb.Status_STATUS_FROZEN {
		t.Fatalf("paused by its freeze, the instance shows %v", got.Status)
	}
	_, err = e.inst.StopInstance(e.ctx(), &pb.StopInstanceRequest{Id: id})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "FROZEN") {
		t.Fatalf("stop of a frozen instance: %v", err)
	}
	_, err = e.inst.UnpauseInstance(e.ctx(), &pb.UnpauseInstanceRequest{Id: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unpause of a frozen instance: %v", err)
	}
	// Seed 004's word for it.
	v, err := e.inst.GetInstance(e.ctx(), &pb.GetInstanceRequest{Id: id, Vocabularies: []pb.Vocabulary{pb.Vocabulary_VOCABULARY_MANAGED_INSTANCE}})
	if err != nil || len(v.Views) != 1 || v.Views[0].Status != "FROZEN" {
		t.Fatalf("managed-instance view: %v, %v", v.GetViews(), err)
	}

	// A top-up ends the freeze and resumes the guest.
	if _, err := e.projects.TopUpProject(e.ctx(), &pb.TopUpProjectRequest{Name: "pay", AmountMilli: 1_000_000_000}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(id, pb.Status_STATUS_RUNNING)
	if got := e.get(id); got.PowerState != pb.PowerState_POWER_STATE_RUNNING {
		t.Fatalf("after the top-up: power %v", got.PowerState)
	}
	check(id, false)
	if p, err := e.projects.GetProject(e.ctx(), &pb.GetProjectRequest{Name: "pay"}); err != nil || p.Frozen || p.Usage.GetInstances() != 1 {
		t.Fatalf("project after the top-up: %v, %v", p, err)
	}
}

// TestBalanceFreezesFake runs the whole story with the fake hypervisor.
func TestBalanceFreezesFake(t *testing.T) {
	e := newEnv(t, "fake", "fake-1")
	freezeAndThaw(t, e, &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}, func(string, bool) {})
}

// TestBalanceFreezesLibvirt runs it on the real libvirtd: the frozen
// instance's domain is paused (virsh domstate says so) and runs again
// after the top-up.
func TestBalanceFreezesLibvirt(t *testing.T) {
	// Lock first: a test of another package may be restarting libvirtd.
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	e := newEnv(t, "libvirt", "e2eprojects-freeze")
	freezeAndThaw(t, e, &pb.InstanceSpec{Vcpus: 1, MemoryMib: 192, Image: "flotilla-test"}, func(id string, paused bool) {
		t.Cleanup(func() {
			_, _ = virsh(t, "destroy", "flotilla-"+id)
			_, _ = virsh(t, "undefine", "--managed-save", "flotilla-"+id)
		})
		want := "running"
		if paused {
			want = "paused"
		}
		if got := domstate(t, id); got != want {
			t.Fatalf("virsh domstate flotilla-%s: %q, want %q", id, got, want)
		}
	})
}

// virsh runs virsh against the system libvirtd.
func virsh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return testenv.Run(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
}

// domstate is libvirt's own word for the domain's state.
func domstate(t *testing.T, id string) string {
	t.Helper()
	out, err := virsh(t, "domstate", "flotilla-"+id)
	if err != nil {
		return "missing"
	}
	return strings.TrimSpace(out)
}
