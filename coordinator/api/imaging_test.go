package api

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Rebuild, rescue, unrescue and bundle: only once every server records
// them (log version 8); bad image names name their field; what makes no
// sense in the status is refused with the allowed actions.
func TestImagingRequests(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion6})
	i := w.create("web", 1)
	_, err := w.inst.RebuildInstance(ctx, &pb.RebuildInstanceRequest{Id: i.Id})
	refused(t, "rebuild at log version 6", err, codes.FailedPrecondition, "")
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion8})

	_, err = w.inst.RebuildInstance(ctx, &pb.RebuildInstanceRequest{Id: i.Id, Image: "../etc"})
	refused(t, "rebuild from ../etc", err, codes.InvalidArgument, "image")
	_, err = w.inst.RescueInstance(ctx, &pb.RescueInstanceRequest{Id: i.Id, RescueImage: "a/b"})
	refused(t, "rescue with a/b", err, codes.InvalidArgument, "rescue_image")
	_, err = w.inst.BundleInstance(ctx, &pb.BundleInstanceRequest{Id: i.Id})
	refused(t, "bundle without a name", err, codes.InvalidArgument, "image")
	_, err = w.inst.BundleInstance(ctx, &pb.BundleInstanceRequest{Id: i.Id, Image: "snap"})
	refused(t, "bundle of a running instance", err, codes.FailedPrecondition, "")
	_, err = w.inst.UnrescueInstance(ctx, &pb.UnrescueInstanceRequest{Id: i.Id})
	refused(t, "unrescue of a running instance", err, codes.FailedPrecondition, "")
	_, err = w.inst.RescueInstance(ctx, &pb.RescueInstanceRequest{Id: "i-nope"})
	refused(t, "rescue of a missing instance", err, codes.NotFound, "")

	op, err := w.inst.RescueInstance(ctx, &pb.RescueInstanceRequest{Id: i.Id})
	if err != nil || op.Kind != pb.OperationKind_OPERATION_KIND_RESCUE {
		t.Fatalf("rescue: %v, %v", op, err)
	}
	w.done(op.Id)
	if got, _ := w.inst.GetInstance(ctx, &pb.GetInstanceRequest{Id: i.Id}); got.GetStatus() != pb.Status_STATUS_RESCUED {
		t.Fatalf("after the rescue: %v", got.GetStatus())
	}
	_, err = w.inst.RebuildInstance(ctx, &pb.RebuildInstanceRequest{Id: i.Id})
	refused(t, "rebuild of a rescued instance", err, codes.FailedPrecondition, "")
	if !strings.Contains(status.Convert(err).Message(), "allowed: unrescue, delete") {
		t.Errorf("refusal does not list the allowed actions: %v", err)
	}

	// Deleted: a tombstone, rescued or not.
	del, err := w.inst.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: i.Id})
	if err != nil {
		t.Fatal(err)
	}
	w.done(del.Id)
	_, err = w.inst.RescueInstance(ctx, &pb.RescueInstanceRequest{Id: i.Id})
	refused(t, "rescue of a deleted instance", err, codes.FailedPrecondition, "")
}
