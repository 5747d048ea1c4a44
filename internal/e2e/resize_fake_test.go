package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// TestResizeWithFakeAgents drives every resize path through real processes
// (a coordinator, two fake-hypervisor agents pulling disks from each
// other): to another host and confirmed, in place and reverted, with a
// confirm window; a move of one instance; and the refusals, each with its
// code and nothing changed.
func TestResizeWithFakeAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	e, coord := newOpsEnv(t)
	e.fakeHost(coord, "h-src", "--vcpus=4", "--memory-mib=1024")
	created := e.plainCreate("resized")
	e.mustSucceed(created)
	id := created.InstanceId
	e.fakeHost(coord, "h-dst", "--vcpus=4", "--memory-mib=1024")
	c := e.cl.inst(0)
	ctx := context.Background()

	refuse := func(what string, want codes.Code, call func() error) {
		t.Helper()
		before := e.instance(id)
		if err := call(); status.Code(err) != want {
			t.Fatalf("%s: %v, want %s", what, err, want)
		}
		if after := e.instance(id); after.ModifyRevision != before.ModifyRevision {
			t.Fatalf("%s changed the instance: %v", what, after)
		}
	}
	refuse("a smaller disk", codes.InvalidArgument, func() error {
		_, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 2, DiskGib: -1})
		return err
	})
	refuse("the same shape", codes.InvalidArgument, func() error {
		_, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 1})
		return err
	})
	refuse("a shape no host holds", codes.ResourceExhausted, func() error {
		// 4 vCPUs at the default overcommit of 4.0 hold 16.
		_, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 17})
		return err
	})
	refuse("an unknown target", codes.NotFound, func() error {
		_, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 2, TargetHostId: "h-nope"})
		return err
	})
	refuse("a confirm with nothing to confirm", codes.FailedPrecondition, func() error {
		_, err := c.ConfirmResize(ctx, &pb.ConfirmResizeRequest{Id: id})
		return err
	})
	refuse("a revert with nothing to revert", codes.FailedPrecondition, func() error {
		_, err := c.RevertResize(ctx, &pb.RevertResizeRequest{Id: id})
		return err
	})
	refuse("an extend that shrinks", codes.InvalidArgument, func() error {
		_, err := c.ExtendInstance(ctx, &pb.ExtendInstanceRequest{Id: id, DiskGib: 0})
		return err
	})
	if _, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: "i-nope", Vcpus: 2}); status.Code(err) != codes.NotFound {
		t.Fatalf("resize of an unknown instance: %v", err)
	}

	// To the other host, named; confirmed.
	op, err := c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 2, MemoryMib: 128, DiskGib: 2, TargetHostId: "h-dst"})
	if err != nil {
		t.Fatal(err)
	}
	done := e.wait(op, 60*time.Second)
	if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED || len(done.Steps) != 13 {
		t.Fatalf("resize: %s %v %v", done.State, done.Error, stepNames(done))
	}
	inst := e.instance(id)
	if inst.Status != pb.Status_STATUS_VERIFY_RESIZE || inst.HostId != "h-dst" || inst.Spec.Vcpus != 2 || inst.Spec.DiskGib != 2 ||
		inst.Resize.GetSourceHostId() != "h-src" || inst.Resize.GetFrom().GetVcpus() != 1 {
		t.Fatalf("resized: %v", inst)
	}
	if h, _ := pb.NewHostServiceClient(e.cl.conns[0]).GetHost(ctx, &pb.GetHostRequest{Id: "h-src"}); len(h.OrphanDomains) != 0 {
		t.Fatalf("the original is an orphan: %v", h)
	}
	op, err = c.ConfirmResize(ctx, &pb.ConfirmResizeRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(op)
	if inst = e.instance(id); inst.Status != pb.Status_STATUS_RUNNING || inst.Resize != nil {
		t.Fatalf("confirmed: %v", inst)
	}

	// In place (it fits on h-dst), reverted.
	op, err = c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, MemoryMib: 192})
	if err != nil {
		t.Fatal(err)
	}
	done = e.wait(op, 60*time.Second)
	if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED || done.TargetHostId != "" || len(done.Steps) != 4 {
		t.Fatalf("resize in place: %s %v %v", done.State, done.Error, stepNames(done))
	}
	if inst = e.instance(id); inst.Status != pb.Status_STATUS_VERIFY_RESIZE || inst.HostId != "h-dst" || inst.Spec.MemoryMib != 192 {
		t.Fatalf("resized in place: %v", inst)
	}
	op, err = c.RevertResize(ctx, &pb.RevertResizeRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(op)
	if inst = e.instance(id); inst.Status != pb.Status_STATUS_RUNNING || inst.Spec.MemoryMib != 128 || inst.Resize != nil {
		t.Fatalf("reverted: %v", inst)
	}

	// A confirm window confirms by itself.
	op, err = c.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: id, Vcpus: 1, ConfirmWindow: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(op)
	if inst = e.instance(id); inst.Status != pb.Status_STATUS_VERIFY_RESIZE || inst.Resize.GetConfirmTime() == nil {
		t.Fatalf("resized with a window: %v", inst)
	}
	testenv.Eventually(t, 15*time.Second, "the confirm window to confirm the resize", func() bool {
		inst = e.instance(id)
		return inst.Status == pb.Status_STATUS_RUNNING && inst.Resize == nil
	})
	if ops, err := e.cl.ops(0).ListOperations(ctx, &pb.ListOperationsRequest{InstanceId: id}); err != nil ||
		ops.Operations[0].Kind != pb.OperationKind_OPERATION_KIND_CONFIRM_RESIZE || ops.Operations[0].State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("the window's confirm: %v %v", ops, err)
	}

	// An extend, then a move of this one instance to where the scheduler finds room.
	op, err = c.ExtendInstance(ctx, &pb.ExtendInstanceRequest{Id: id, DiskGib: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(op)
	op, err = c.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(op)
	if inst = e.instance(id); inst.Status != pb.Status_STATUS_RUNNING || inst.HostId != "h-src" || inst.Spec.DiskGib != 3 {
		t.Fatalf("moved: %v", inst)
	}
}
