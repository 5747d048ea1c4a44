package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// TestWaitingAndPreemption: an instance created while no host has room
// waits as PENDING and is placed as soon as capacity appears; a normal
// instance evicts a preemptible one, which goes back to BIDDING and returns
// when room frees up; a waiting instance can be deleted at once.
func TestWaitingAndPreemption(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	dir := t.TempDir()
	coord := testenv.StartCoordinator(t, dir)
	cl := dialAll(t, []*testenv.Coordinator{coord})
	g := testenv.NewGrpcurl(t, coord.Addr)
	coord.WaitReady(t, g)
	ctx := context.Background()
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "flotilla-test"}
	create := func(name string, preemptible bool) string {
		t.Helper()
		op, err := cl.inst(0).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: name, Spec: spec, Placement: &pb.Placement{Preemptible: preemptible}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return op.InstanceId
	}
	status := func(id string) pb.Status {
		t.Helper()
		i, err := cl.inst(0).GetInstance(ctx, &pb.GetInstanceRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		return i.Status
	}
	waitStatus := func(id string, want pb.Status) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, id+" to be "+want.String(), func() bool { return status(id) == want })
	}

	// No host at all: the create is accepted and waits.
	first := create("first", false)
	if s := status(first); s != pb.Status_STATUS_PENDING {
		t.Fatalf("with no host: %s", s)
	}
	// A host with room for exactly two such instances registers: it is placed.
	testenv.StartAgent(t, dir, coord.Addr, "small", "fake", "--vcpus=2", "--memory-mib=1024")
	waitStatus(first, pb.Status_STATUS_RUNNING)

	spot := create("spot", true)
	waitStatus(spot, pb.Status_STATUS_RUNNING)

	// The host is full. A normal instance evicts the preemptible one.
	urgent := create("urgent", false)
	waitStatus(urgent, pb.Status_STATUS_RUNNING)
	waitStatus(spot, pb.Status_STATUS_BIDDING)
	ops, err := cl.ops(0).ListOperations(ctx, &pb.ListOperationsRequest{InstanceId: spot})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []pb.OperationKind
	for _, op := range ops.Operations {
		kinds = append(kinds, op.Kind)
	}
	// Newest first: the waiting re-create, the eviction, the original create.
	if len(kinds) != 3 || kinds[0] != pb.OperationKind_OPERATION_KIND_CREATE || kinds[1] != pb.OperationKind_OPERATION_KIND_PREEMPT || ops.Operations[1].State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("spot's operations: %v", ops.Operations)
	}
	if h, err := pb.NewHostServiceClient(cl.conns[0]).GetHost(ctx, &pb.GetHostRequest{Id: "small"}); err != nil || h.Allocated.Vcpus != 2 {
		t.Fatalf("host after preemption: %v %v", h, err)
	}

	// A preemptible instance never evicts another: it bids.
	other := create("other-spot", true)
	if s := status(other); s != pb.Status_STATUS_BIDDING {
		t.Fatalf("a second preemptible instance on a full host: %s", s)
	}
	// Deleting a waiting instance needs no host.
	del, err := cl.inst(0).DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: other})
	if err != nil || del.State != pb.OperationState_OPERATION_STATE_SUCCEEDED || status(other) != pb.Status_STATUS_DELETED {
		t.Fatalf("delete while bidding: %v %v (status %s)", del, err, status(other))
	}

	// Room frees up: the evicted instance comes back.
	if _, err := cl.inst(0).DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: urgent}); err != nil {
		t.Fatal(err)
	}
	waitStatus(spot, pb.Status_STATUS_RUNNING)
}
