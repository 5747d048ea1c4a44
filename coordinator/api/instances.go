package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type instances struct {
	*core
	pb.UnimplementedInstanceServiceServer
}

// createCmds holds create commands for reuse: one is 800 bytes, and the
// leader builds one for every create.
var createCmds = sync.Pool{New: func() any { return new(fsm.CreateInstance) }}

func (s *instances) CreateInstance(ctx context.Context, r *pb.CreateInstanceRequest) (*pb.Operation, error) {
	if v := validateCreate(r); len(v) > 0 {
		return nil, invalid(v)
	}
	if op, ok := s.store.OperationByRequest(r.RequestId); r.RequestId != "" && ok {
		return convert.OperationToPB(&op), nil
	}
	// Validated above: every size is in range and non-negative.
	spec := state.Spec{VCPUs: uint32(r.Spec.Vcpus), MemoryMiB: uint64(r.Spec.MemoryMib), DiskGiB: uint64(r.Spec.DiskGib), Image: r.Spec.Image}
	pl := r.GetPlacement()
	placed := state.Placement{Kind: pl.GetHypervisorKind(), Labels: pl.GetHostLabels(), Group: pl.GetAntiAffinityGroup(), Preemptible: pl.GetPreemptible()}
	hostID, err := s.place(spec, placed)
	if err != nil {
		return nil, toStatus(err)
	}
	now := s.now()
	cmd := createCmds.Get().(*fsm.CreateInstance)
	*cmd = fsm.CreateInstance{
		Policy: s.policy,
		Instance: state.Instance{ID: ids.New("i-"), Name: r.Name, Spec: spec, HostID: hostID,
			Recovery: convert.RecoveryFromPB(r.GetRecovery()), Placement: placed, Labels: r.GetLabels()},
		Operation: state.Operation{ID: ids.New("op-"), RequestID: r.RequestId, Deadline: now.Add(s.deadline(lifecycle.OpCreate)),
			RequestedBy: caller.Of(ctx)},
	}
	cmd.Operation.InstanceID = cmd.Instance.ID
	v, err := s.apply(ctx, fsm.TypeCreateInstance, cmd) // encoded before it returns: cmd is free again
	*cmd = fsm.CreateInstance{}
	createCmds.Put(cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	op, err := s.operation(v.(string))
	return op, toStatus(err)
}

// place chooses a host for a new instance, or "" to let it wait for
// capacity (PENDING, or BIDDING if preemptible): hosts are full, down, or a
// preemption must make room first. Only a request that no host could hold
// even empty is refused.
func (s *instances) place(spec state.Spec, pl state.Placement) (string, error) {
	cands := placement.FromStore(s.store)
	if len(cands) == 0 {
		return "", nil // no host at all: it waits (nothing to refuse it against)
	}
	req := placement.Request(spec, pl)
	d, err := scheduler.Place(req, cands, s.policy)
	if err == nil && len(d.Preempt) == 0 {
		return d.HostID, nil
	}
	if err != nil && !errors.Is(err, scheduler.ErrNoHost) {
		return "", err
	}
	if len(cands) > 0 && !couldEverFit(req, cands, s.policy) {
		return "", fmt.Errorf("no host could ever hold it, even empty: %w", fsm.ErrNoCapacity)
	}
	return "", nil
}

// couldEverFit reports whether some host, emptied, up and open, would take r.
func couldEverFit(r scheduler.Request, hosts []scheduler.Host, p scheduler.Policy) bool {
	for _, h := range hosts {
		h.Allocated, h.Groups, h.Ready, h.Cordoned = scheduler.Resources{}, nil, true, false
		if scheduler.Fits(h, r, p) {
			return true
		}
	}
	return false
}

func (s *instances) UpdateInstance(ctx context.Context, r *pb.UpdateInstanceRequest) (*pb.Operation, error) {
	v := validateUpdate(r)
	u := &state.ModelUpdate{}
	for _, p := range r.GetUpdateMask().GetPaths() {
		switch p {
		case "name":
			name := r.GetName()
			u.Name = &name
		case "labels":
			u.SetLabels, u.Labels = true, r.GetLabels()
		case "recovery":
			rc := convert.RecoveryFromPB(r.GetRecovery())
			u.Recovery = &rc
		}
	}
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionUpdate, update: u}, v)
}

// actRequest is one user action and its parameters.
type actRequest struct {
	id, requestID string
	action        lifecycle.Action
	hard          bool
	graceful      time.Duration
	force         bool
	update        *state.ModelUpdate
	// For a move or a resize: where to (empty: in place, for a resize),
	// and the token of its disk copy; for a resize or an extend, the shape.
	target string
	resize *state.Resize
}

// act validates and commits one user action; v holds the violations its
// own parameters already showed.
func (s *instances) act(ctx context.Context, r actRequest, v violations) (*pb.Operation, error) {
	id, requestID, a, hard, graceful, force := r.id, r.requestID, r.action, r.hard, r.graceful, r.force
	validateID(&v, "id", id)
	validateRequestID(&v, requestID)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if op, ok := s.store.OperationByRequest(requestID); requestID != "" && ok {
		return convert.OperationToPB(&op), nil
	}
	inst, err := s.store.Instance(id)
	if err != nil {
		return nil, toStatus(err)
	}
	// Refuse early from local state; the FSM checks again at commit time.
	if err := lifecycle.Check(inst.Status(), a); err != nil {
		return nil, toStatus(err)
	}
	kind := lifecycle.PlanFor(inst.Status(), a, hard).Op
	now := s.now()
	cmd := fsm.InstanceAction{Action: a, Hard: hard, Policy: s.policy, Operation: state.Operation{
		ID: ids.New("op-"), InstanceID: id, RequestID: requestID,
		Deadline: now.Add(s.deadline(kind) + graceful), Graceful: graceful, Force: force, Update: r.update,
		RequestedBy: caller.Of(ctx), TargetHostID: r.target, Resize: r.resize,
	}}
	if r.target != "" && r.target != inst.HostID {
		cmd.Operation.Token = newToken()
	}
	res, err := s.apply(ctx, fsm.TypeInstanceAction, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	op, err := s.operation(res.(string))
	return op, toStatus(err)
}

func (s *instances) StartInstance(ctx context.Context, r *pb.StartInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionStart}, nil)
}

func (s *instances) StopInstance(ctx context.Context, r *pb.StopInstanceRequest) (*pb.Operation, error) {
	var v violations
	graceful := stopGraceful(&v, r)
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionStop, graceful: graceful, force: r.Force}, v)
}

func (s *instances) RestartInstance(ctx context.Context, r *pb.RestartInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionRestart, hard: r.Hard}, nil)
}

func (s *instances) PauseInstance(ctx context.Context, r *pb.PauseInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionPause}, nil)
}

func (s *instances) UnpauseInstance(ctx context.Context, r *pb.UnpauseInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionUnpause}, nil)
}

func (s *instances) SuspendInstance(ctx context.Context, r *pb.SuspendInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionSuspend}, nil)
}

func (s *instances) ResumeInstance(ctx context.Context, r *pb.ResumeInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionResume}, nil)
}

func (s *instances) DeleteInstance(ctx context.Context, r *pb.DeleteInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionDelete}, nil)
}

func (s *instances) GetInstance(ctx context.Context, r *pb.GetInstanceRequest) (*pb.Instance, error) {
	var v violations
	validateID(&v, "id", r.Id)
	vocabs := vocabulariesFromPB(&v, r.Vocabularies)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.waitRevision(ctx, r.MinRevision); err != nil {
		return nil, toStatus(err)
	}
	inst, err := s.store.Instance(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.InstanceToPB(&inst, vocabs...), nil
}

func (s *instances) ListInstances(ctx context.Context, r *pb.ListInstancesRequest) (*pb.ListInstancesResponse, error) {
	var v violations
	size := pageSize(&v, r.PageSize)
	var want []lifecycle.Status
	for _, f := range r.StatusFilter {
		st, ok := convert.StatusFromPB(f)
		if !ok {
			v.add("status_filter", "unknown status %v", f)
		}
		want = append(want, st)
	}
	vocabs := vocabulariesFromPB(&v, r.Vocabularies)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.waitRevision(ctx, r.MinRevision); err != nil {
		return nil, toStatus(err)
	}
	all, rev := s.store.Instances()
	out := &pb.ListInstancesResponse{Revision: rev}
	for _, inst := range all {
		if inst.ID <= r.PageToken {
			continue // ids are ordered; the token is the last id of the previous page
		}
		st := inst.Status()
		if len(want) > 0 && !slices.Contains(want, st) {
			continue
		}
		if st == lifecycle.StatusDeleted && !r.ShowDeleted && !slices.Contains(want, st) {
			continue
		}
		if len(out.Instances) == size {
			out.NextPageToken = out.Instances[size-1].Id
			break
		}
		out.Instances = append(out.Instances, convert.InstanceToPB(&inst, vocabs...))
	}
	return out, nil
}

func pageSize(v *violations, n int32) int {
	switch {
	case n < 0 || n > 1000:
		v.add("page_size", "must be 0..1000")
	case n == 0:
		return 100
	}
	return int(n)
}

func (s *instances) WatchInstances(r *pb.WatchInstancesRequest, stream pb.InstanceService_WatchInstancesServer) error {
	var v violations
	if r.StartRevision < 0 {
		v.add("start_revision", "must not be negative")
	}
	if r.InstanceId != "" {
		validateID(&v, "instance_id", r.InstanceId)
	}
	vocabs := vocabulariesFromPB(&v, r.Vocabularies)
	if len(v) > 0 {
		return invalid(v)
	}
	ctx := stream.Context()
	rev := r.StartRevision
	if rev == 0 {
		rev = s.store.Revision()
	}
	for {
		events, changed, _, err := s.store.Since(rev)
		if err != nil {
			return toStatus(err)
		}
		// One message per revision, with every matching change in it.
		var msg *pb.WatchInstancesResponse
		flush := func() error {
			if msg == nil || len(msg.Instances) == 0 {
				return nil
			}
			err := stream.Send(msg)
			msg = nil
			return err
		}
		for _, e := range events {
			if msg != nil && msg.Revision != e.Revision {
				if err := flush(); err != nil {
					return err
				}
			}
			if msg == nil {
				msg = &pb.WatchInstancesResponse{Revision: e.Revision}
			}
			rev = e.Revision
			if r.InstanceId == "" || e.Instance.ID == r.InstanceId {
				msg.Instances = append(msg.Instances, convert.InstanceToPB(&e.Instance, vocabs...))
			}
		}
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}
