package api

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// local applies commands straight to an FSM, as a single-node log would.
type local struct{ f *fsm.FSM }

func (l *local) Apply(_ context.Context, cmd []byte) (any, error) {
	r := l.f.ApplyBytes(cmd)
	return r.Value, r.Err
}

// writes is the write side of the API over a one-node log: hosts h1 and
// h2 serve disk copies, h3 does not and is cordoned, so instances land on
// h1 or h2; each has 8 vCPUs.
type writes struct {
	t     *testing.T
	store *state.Store
	l     *local
	now   time.Time
	inst  *instances
	hosts *hosts
	ops   *operations
}

func newWrites(t *testing.T, deadlines map[lifecycle.OpKind]time.Duration) *writes {
	s := state.New(0)
	w := &writes{t: t, store: s, l: &local{f: fsm.New(s, nil)}, now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	c := newCore(Config{Store: s, Applier: w.l, Deadlines: deadlines, Logger: slog.Default(), Now: func() time.Time { return w.now }})
	w.inst, w.hosts, w.ops = &instances{core: c}, &hosts{core: c}, &operations{core: c}
	for _, h := range []struct{ id, peer string }{{"h1", "127.0.0.1:7001"}, {"h2", "127.0.0.1:7002"}, {"h3", ""}} {
		w.apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: h.id, Kind: "fake", PeerAddr: h.peer,
			Capacity: state.Resources{VCPUs: 8, MemoryMiB: 1 << 16, DiskGiB: 1 << 10}}})
	}
	w.apply(fsm.TypeCordonHost, fsm.CordonHost{HostID: "h3", Cordon: true})
	return w
}

func (w *writes) apply(typ string, body any) {
	w.t.Helper()
	if _, err := fsm.Propose(context.Background(), w.l, typ, w.now, body); err != nil {
		w.t.Fatalf("%s: %v", typ, err)
	}
}

// done runs an operation's steps to success, as its agents would.
func (w *writes) done(opID string) {
	w.t.Helper()
	for {
		op, err := w.store.Operation(opID)
		if err != nil {
			w.t.Fatal(err)
		}
		st := op.Current()
		if op.State.Done() || st == nil {
			return
		}
		host, _ := w.store.Host(op.StepHost(st))
		id := op.StepID(op.Cur, st.Attempt+1)
		w.apply(fsm.TypeDispatch, fsm.Dispatch{Steps: []fsm.DispatchStep{{OperationID: opID, StepID: id, HostEpoch: host.Epoch}}})
		w.apply(fsm.TypeFinish, fsm.Finish{OperationID: opID, StepID: id, Succeeded: true, HostID: host.ID})
	}
}

// create makes a running instance of vcpus on one of the hosts.
func (w *writes) create(name string, vcpus int32) *pb.Instance {
	w.t.Helper()
	op, err := w.inst.CreateInstance(context.Background(), &pb.CreateInstanceRequest{Name: name,
		Spec: &pb.InstanceSpec{Vcpus: vcpus, MemoryMib: 512, DiskGib: 10, Image: "img"}})
	if err != nil {
		w.t.Fatal(err)
	}
	w.done(op.Id)
	i, err := w.inst.GetInstance(context.Background(), &pb.GetInstanceRequest{Id: op.InstanceId})
	if err != nil {
		w.t.Fatal(err)
	}
	return i
}

// refused checks an error's code and, for INVALID_ARGUMENT, the field named.
func refused(t *testing.T, what string, err error, code codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("%s: %v, want %v", what, err, code)
		return
	}
	if field == "" {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 && br.FieldViolations[0].Field == field {
			return
		}
	}
	t.Errorf("%s: %v does not name field %s", what, err, field)
}

// Creates are validated, placed, deduplicated by request id, and refused
// when no host could ever hold them.
func TestCreateInstance(t *testing.T) {
	w := newWrites(t, map[lifecycle.OpKind]time.Duration{lifecycle.OpCreate: 42 * time.Second})
	ctx := context.Background()
	req := &pb.CreateInstanceRequest{Name: "web", RequestId: "req-1", Spec: &pb.InstanceSpec{Vcpus: 2, MemoryMib: 512, DiskGib: 10, Image: "img"},
		Recovery: &pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_RESTART}, Labels: map[string]string{"app": "web"}}
	op, err := w.inst.CreateInstance(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if op.Kind != pb.OperationKind_OPERATION_KIND_CREATE || op.RequestId != "req-1" || !op.Deadline.AsTime().Equal(w.now.Add(42*time.Second)) {
		t.Errorf("create operation %v", op)
	}
	again, err := w.inst.CreateInstance(ctx, req)
	if err != nil || again.Id != op.Id {
		t.Errorf("replayed create: %v, %v; want operation %s", again, err, op.Id)
	}
	inst, _ := w.store.Instance(op.InstanceId)
	if inst.HostID == "" || inst.Recovery != (state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 3}) || inst.Labels["app"] != "web" {
		t.Errorf("instance %+v", inst)
	}
	_, err = w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "Bad_Name", Spec: req.Spec})
	refused(t, "bad name", err, codes.InvalidArgument, "name")
	_, err = w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "huge", Spec: &pb.InstanceSpec{Vcpus: 64, MemoryMib: 512, Image: "img"}})
	refused(t, "larger than any host", err, codes.ResourceExhausted, "")
}

// Actions are checked against the status, dated from the deadlines, and
// deduplicated by request id.
func TestInstanceActions(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	i := w.create("web", 1)
	_, err := w.inst.StartInstance(ctx, &pb.StartInstanceRequest{Id: i.Id})
	refused(t, "start a running instance", err, codes.FailedPrecondition, "")
	_, err = w.inst.StartInstance(ctx, &pb.StartInstanceRequest{Id: "i-nope"})
	refused(t, "start a missing instance", err, codes.NotFound, "")
	_, err = w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: i.Id, GracefulTimeout: durationpb.New(time.Millisecond)})
	refused(t, "graceful too short", err, codes.InvalidArgument, "graceful_timeout")
	_, err = w.inst.StopInstance(ctx, &pb.StopInstanceRequest{Id: i.Id, RequestId: "bad id"})
	refused(t, "bad request id", err, codes.InvalidArgument, "request_id")
	stop := &pb.StopInstanceRequest{Id: i.Id, RequestId: "stop-1", GracefulTimeout: durationpb.New(time.Minute), Force: true}
	op, err := w.inst.StopInstance(ctx, stop)
	if err != nil {
		t.Fatal(err)
	}
	want := w.now.Add(lifecycle.DefaultDeadlines[lifecycle.OpStop] + time.Minute)
	if op.Kind != pb.OperationKind_OPERATION_KIND_STOP || !op.Force || op.GracefulTimeout.AsDuration() != time.Minute || !op.Deadline.AsTime().Equal(want) {
		t.Errorf("stop operation %v", op)
	}
	if again, err := w.inst.StopInstance(ctx, stop); err != nil || again.Id != op.Id {
		t.Errorf("replayed stop: %v, %v; want operation %s", again, err, op.Id)
	}
	_, err = w.ops.CancelOperation(ctx, &pb.CancelOperationRequest{Id: "op-nope"})
	refused(t, "cancel a missing operation", err, codes.NotFound, "")
	w.done(op.Id)
	_, err = w.ops.CancelOperation(ctx, &pb.CancelOperationRequest{Id: op.Id})
	refused(t, "cancel a finished operation", err, codes.FailedPrecondition, "")
	up, err := w.inst.UpdateInstance(ctx, &pb.UpdateInstanceRequest{Id: i.Id, Name: "www", UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
	if err != nil || up.Kind != pb.OperationKind_OPERATION_KIND_UPDATE {
		t.Errorf("update: %v, %v", up, err)
	}
}

// Resizes and extends refuse shapes that shrink the disk or change
// nothing; a resize that does not fit in place goes where there is room.
func TestResizeAndExtend(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	i := w.create("web", 2)
	for _, c := range []struct {
		name  string
		req   *pb.ResizeInstanceRequest
		code  codes.Code
		field string
	}{
		{"nothing to change", &pb.ResizeInstanceRequest{Id: i.Id}, codes.InvalidArgument, "vcpus"},
		{"disk shrinks", &pb.ResizeInstanceRequest{Id: i.Id, DiskGib: 5}, codes.InvalidArgument, "disk_gib"},
		{"same shape", &pb.ResizeInstanceRequest{Id: i.Id, Vcpus: 2}, codes.InvalidArgument, "vcpus"},
		{"missing instance", &pb.ResizeInstanceRequest{Id: "i-nope", Vcpus: 4}, codes.NotFound, ""},
		{"target without copies", &pb.ResizeInstanceRequest{Id: i.Id, Vcpus: 4, TargetHostId: "h3"}, codes.FailedPrecondition, ""},
		{"bad target", &pb.ResizeInstanceRequest{Id: i.Id, Vcpus: 4, TargetHostId: "H_3"}, codes.InvalidArgument, "target_host_id"},
	} {
		_, err := w.inst.ResizeInstance(ctx, c.req)
		refused(t, c.name, err, c.code, c.field)
	}
	_, err := w.inst.ExtendInstance(ctx, &pb.ExtendInstanceRequest{Id: i.Id, DiskGib: 10})
	refused(t, "extend to the same size", err, codes.InvalidArgument, "disk_gib")

	// With a neighbour, 2 -> 8 vCPUs cannot fit on its own host: it goes elsewhere.
	w.apply(fsm.TypeCreateInstance, fsm.CreateInstance{
		Instance:  state.Instance{ID: "i-neighbour", Name: "neighbour", HostID: i.HostId, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-neighbour", InstanceID: "i-neighbour"},
	})
	op, err := w.inst.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: i.Id, Vcpus: 8})
	if err != nil {
		t.Fatal(err)
	}
	if op.Kind != pb.OperationKind_OPERATION_KIND_RESIZE || op.TargetHostId == "" || op.TargetHostId == i.HostId || op.TargetHostId == "h3" {
		t.Errorf("resize elsewhere: %v (from %s)", op, i.HostId)
	}

	j := w.create("db", 1)
	op, err = w.inst.ResizeInstance(ctx, &pb.ResizeInstanceRequest{Id: j.Id, MemoryMib: 1024, ConfirmWindow: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if op.Kind != pb.OperationKind_OPERATION_KIND_RESIZE || (op.TargetHostId != "" && op.TargetHostId != j.HostId) {
		t.Errorf("resize in place: %v (on %s)", op, j.HostId)
	}

	k := w.create("cache", 1)
	op, err = w.inst.ExtendInstance(ctx, &pb.ExtendInstanceRequest{Id: k.Id, DiskGib: 20})
	if err != nil || op.Kind != pb.OperationKind_OPERATION_KIND_EXTEND {
		t.Errorf("extend: %v, %v", op, err)
	}
}

// A move goes to the host named, or where there is room; never to where
// the instance is, nor to a host that does not serve copies.
func TestMoveInstance(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	i := w.create("web", 1)
	_, err := w.inst.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: i.Id, TargetHostId: i.HostId})
	refused(t, "move where it is", err, codes.InvalidArgument, "target_host_id")
	_, err = w.inst.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: i.Id, TargetHostId: "h3"})
	refused(t, "move to a host without copies", err, codes.FailedPrecondition, "")
	_, err = w.inst.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: i.Id, TargetHostId: "h9"})
	refused(t, "move to a missing host", err, codes.NotFound, "")
	op, err := w.inst.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: i.Id})
	if err != nil {
		t.Fatal(err)
	}
	want := w.now.Add(lifecycle.DefaultDeadlines[lifecycle.OpMove] + 10*time.Minute)
	if op.Kind != pb.OperationKind_OPERATION_KIND_MOVE || op.TargetHostId == "" || op.TargetHostId == i.HostId || op.TargetHostId == "h3" ||
		!op.Force || !op.Deadline.AsTime().Equal(want) {
		t.Errorf("move: %v (from %s)", op, i.HostId)
	}
}

// Cordons flip the flag; a drain cordons and stops or moves what is on the host.
func TestCordonAndDrain(t *testing.T) {
	w := newWrites(t, nil)
	ctx := context.Background()
	_, err := w.hosts.CordonHost(ctx, &pb.CordonHostRequest{})
	refused(t, "cordon without an id", err, codes.InvalidArgument, "id")
	h, err := w.hosts.UncordonHost(ctx, &pb.UncordonHostRequest{Id: "h3"})
	if err != nil || h.Cordoned || h.Status != pb.HostStatus_HOST_STATUS_READY {
		t.Errorf("uncordon: %v, %v", h, err)
	}
	if h, err = w.hosts.CordonHost(ctx, &pb.CordonHostRequest{Id: "h3"}); err != nil || !h.Cordoned || h.Status != pb.HostStatus_HOST_STATUS_CORDONED {
		t.Errorf("cordon: %v, %v", h, err)
	}
	i := w.create("web", 1)
	_, err = w.hosts.DrainHost(ctx, &pb.DrainHostRequest{Id: "h1", Policy: 7})
	refused(t, "unknown policy", err, codes.InvalidArgument, "policy")
	_, err = w.hosts.DrainHost(ctx, &pb.DrainHostRequest{Id: "h9"})
	refused(t, "drain a missing host", err, codes.NotFound, "")
	h, err = w.hosts.DrainHost(ctx, &pb.DrainHostRequest{Id: i.HostId, Policy: pb.DrainPolicy_DRAIN_POLICY_MOVE})
	if err != nil || !h.Cordoned {
		t.Fatalf("drain: %v, %v", h, err)
	}
	inst, _ := w.store.Instance(i.Id)
	op, err := w.store.Operation(inst.CurrentOp)
	if err != nil || op.Kind != lifecycle.OpMove || op.TargetHostID == "" || op.TargetHostID == i.HostId || op.TargetHostID == "h3" ||
		op.Token == "" || op.Graceful != 10*time.Minute {
		t.Errorf("drain's move: %+v, %v", op, err)
	}
}
