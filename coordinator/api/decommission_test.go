package api

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// A stop or delete may give the guest time to decommission: at most an
// hour, only once every server records it (log version 5), on top of the
// operation's deadline; an instance's own default serves a request that
// gives none, and an explicit 0s asks for none.
func TestDecommissionTimeouts(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion4})
	i := w.create("web", 1)
	_, err := w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: i.Id, DecommissionTimeout: durationpb.New(time.Minute)})
	refused(t, "decommissioning at log version 4", err, codes.FailedPrecondition, "")
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion5})
	for _, d := range []time.Duration{-time.Second, time.Hour + time.Second} {
		_, err = w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: i.Id, DecommissionTimeout: durationpb.New(d)})
		refused(t, "stop decommissioning "+d.String(), err, codes.InvalidArgument, "decommission_timeout")
		_, err = w.inst.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: i.Id, DecommissionTimeout: durationpb.New(d)})
		refused(t, "delete decommissioning "+d.String(), err, codes.InvalidArgument, "decommission_timeout")
		_, err = w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "x", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "img"},
			DecommissionTimeout: durationpb.New(d)})
		refused(t, "create decommissioning "+d.String(), err, codes.InvalidArgument, "decommission_timeout")
	}
	op, err := w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: i.Id, DecommissionTimeout: durationpb.New(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	want := w.now.Add(lifecycle.DefaultDeadlines[lifecycle.OpStop] + lifecycle.DefaultGraceful + 90*time.Second)
	if len(op.Steps) != 2 || op.Steps[0].Name != "decommission" || !op.Deadline.AsTime().Equal(want) {
		t.Fatalf("stop with decommissioning: %v", op)
	}
	got, _ := w.inst.GetInstance(ctx, &pb.GetInstanceRequest{Id: i.Id})
	if got.Status != pb.Status_STATUS_DECOMMISSIONING {
		t.Fatalf("status %s", got.Status)
	}
	w.done(op.Id)

	// The instance's own default, and a request that overrides it.
	cop, err := w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "db", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "img"},
		DecommissionTimeout: durationpb.New(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	w.done(cop.Id)
	db, _ := w.inst.GetInstance(ctx, &pb.GetInstanceRequest{Id: cop.InstanceId})
	if db.DecommissionTimeout.AsDuration() != 2*time.Minute {
		t.Fatalf("instance %v", db)
	}
	op, err = w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: db.Id, DecommissionTimeout: durationpb.New(0)})
	if err != nil || len(op.Steps) != 1 {
		t.Fatalf("stop asking for no decommissioning: %v, %v", op, err)
	}
	w.done(op.Id)
	st, _ := w.inst.StartInstance(ctx, &pb.StartInstanceRequest{Id: db.Id})
	w.done(st.Id)
	op, err = w.inst.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: db.Id})
	if err != nil || len(op.Steps) != 2 || op.Steps[0].Name != "decommission" {
		t.Fatalf("delete with the instance's default: %v, %v", op, err)
	}
}
