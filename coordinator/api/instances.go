package api

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type instances struct {
	*core
	pb.UnimplementedInstanceServiceServer
}

func (s *instances) CreateInstance(ctx context.Context, r *pb.CreateInstanceRequest) (*pb.Operation, error) {
	if v := validateCreate(r); len(v) > 0 {
		return nil, invalid(v)
	}
	project := r.GetProject()
	if project == "" {
		project = state.DefaultProject
	}
	if !sees(ctx, project) {
		return nil, status.Errorf(codes.PermissionDenied, "project %q: the caller's certificate does not name it", project)
	}
	pl := r.GetPlacement()
	op, err := s.svc.Create(ctx, service.Create{
		RequestID: r.RequestId,
		Name:      r.Name,
		// Validated above: every size is in range and non-negative.
		Spec:         state.Spec{VCPUs: uint32(r.Spec.Vcpus), MemoryMiB: uint64(r.Spec.MemoryMib), DiskGiB: uint64(r.Spec.DiskGib), Image: r.Spec.Image},
		Recovery:     convert.RecoveryFromPB(r.GetRecovery()),
		Placement:    state.Placement{Kind: pl.GetHypervisorKind(), Labels: pl.GetHostLabels(), Group: pl.GetAntiAffinityGroup(), Preemptible: pl.GetPreemptible()},
		Labels:       r.GetLabels(),
		NICs:         nicsFromPB(r.GetInterfaces()),
		UserData:     r.GetUserData(),
		SSHKeys:      r.GetSshAuthorizedKeys(),
		ReadyTimeout: readyTimeout(r),
		// Validated above.
		DecommissionTimeout: r.GetDecommissionTimeout().AsDuration(),
		Project:             project,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
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
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionUpdate, Update: u}, v)
}

// act validates the fields every action has and commits the action; v
// holds the violations its own parameters already showed.
func (s *instances) act(ctx context.Context, a service.Action, v violations) (*pb.Operation, error) {
	validateID(&v, "id", a.InstanceID)
	validateRequestID(&v, a.RequestID)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, a.InstanceID); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.svc.Act(ctx, a)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}

func (s *instances) StartInstance(ctx context.Context, r *pb.StartInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	validateRequestID(&v, r.RequestId)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	op, err := s.svc.Start(ctx, r.Id, r.RequestId)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}

func (s *instances) DeallocateInstance(ctx context.Context, r *pb.DeallocateInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionDeallocate}, nil)
}

func (s *instances) RestoreInstance(ctx context.Context, r *pb.RestoreInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionRestore}, nil)
}

func (s *instances) StopInstance(ctx context.Context, r *pb.StopInstanceRequest) (*pb.Operation, error) {
	var v violations
	graceful := stopGraceful(&v, r)
	decom := decommissionTimeout(&v, r.GetDecommissionTimeout())
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionStop, Graceful: graceful, Force: r.Force,
		Decommission: decom}, v)
}

func (s *instances) RestartInstance(ctx context.Context, r *pb.RestartInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionRestart, Hard: r.Hard}, nil)
}

func (s *instances) PauseInstance(ctx context.Context, r *pb.PauseInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionPause}, nil)
}

func (s *instances) UnpauseInstance(ctx context.Context, r *pb.UnpauseInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionUnpause}, nil)
}

func (s *instances) SuspendInstance(ctx context.Context, r *pb.SuspendInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionSuspend}, nil)
}

func (s *instances) ResumeInstance(ctx context.Context, r *pb.ResumeInstanceRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionResume}, nil)
}

func (s *instances) DeleteInstance(ctx context.Context, r *pb.DeleteInstanceRequest) (*pb.Operation, error) {
	var v violations
	decom := decommissionTimeout(&v, r.GetDecommissionTimeout())
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionDelete, Decommission: decom,
		Force: r.Force}, v)
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
	if !seesInstance(ctx, &inst) {
		return nil, toStatus(fmt.Errorf("instance %q: %w", r.Id, state.ErrNotFound))
	}
	return s.instanceToPB(&inst, vocabs), nil
}

// instanceToPB converts an instance, its interfaces completed from their networks.
func (s *instances) instanceToPB(i *state.Instance, vocabs []vocabulary.Vocabulary) *pb.Instance {
	out := convert.InstanceToPB(i, vocabs...)
	if len(out.Interfaces) > 0 {
		convert.WithNetworks(out, s.store.Network)
	}
	return out
}

func nicsFromPB(in []*pb.NetworkInterfaceRequest) []state.NIC {
	var out []state.NIC
	for _, n := range in {
		out = append(out, state.NIC{Network: n.GetNetwork(), IPv4: n.GetIpv4Address()})
	}
	return out
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
	page, more, rev := s.store.InstancesPage(r.PageToken, size, func(inst *state.Instance) bool {
		if !seesInstance(ctx, inst) || r.Project != "" && state.ProjectOf(inst) != r.Project {
			return false
		}
		st := inst.Status()
		if len(want) > 0 && !slices.Contains(want, st) {
			return false
		}
		return st != lifecycle.StatusDeleted || r.ShowDeleted || slices.Contains(want, st)
	})
	out := &pb.ListInstancesResponse{Revision: rev, Instances: make([]*pb.Instance, 0, len(page))}
	for k := range page {
		out.Instances = append(out.Instances, s.instanceToPB(&page[k], vocabs))
	}
	if more {
		out.NextPageToken = page[len(page)-1].ID // ids are ordered; the token is the last id of the page
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
	// One message per revision, with every matching change in it. The
	// history is read a page at a time, its records shared (not copied),
	// so a watcher replaying a long history holds one page at a time.
	var msg *pb.WatchInstancesResponse
	flush := func() error {
		if msg == nil || len(msg.Instances) == 0 {
			msg = nil
			return nil
		}
		err := stream.Send(msg)
		msg = nil
		return err
	}
	for {
		changes, changed, more, err := s.store.Changes(rev, watchPage)
		if err != nil {
			return toStatus(err)
		}
		for _, e := range changes {
			if msg != nil && msg.Revision != e.Revision {
				if err := flush(); err != nil {
					return err
				}
			}
			if msg == nil {
				msg = &pb.WatchInstancesResponse{Revision: e.Revision}
			}
			rev = e.Revision
			if (r.InstanceId == "" || e.Instance.ID == r.InstanceId) && seesInstance(ctx, e.Instance) {
				msg.Instances = append(msg.Instances, s.watchPB(e.Instance, vocabs))
			}
		}
		if more {
			continue // a page ends at a revision's end: msg is complete or empty
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

// watchPB is a watched record's wire form: shared by every watcher when
// it asks for no vocabulary words and has no interfaces (whose network
// details are read at conversion time, and may change under the record).
func (s *instances) watchPB(i *state.Instance, vocabs []vocabulary.Vocabulary) *pb.Instance {
	if len(vocabs) > 0 || len(i.NICs) > 0 || s.watched == nil {
		return s.instanceToPB(i, vocabs)
	}
	return s.watched.get(i, func(i *state.Instance) *pb.Instance { return s.instanceToPB(i, nil) })
}

// watchPage is how many history changes a watcher reads at once.
const watchPage = 512

// readyTimeout is a create's readiness timeout: nil when it gives none.
func readyTimeout(r *pb.CreateInstanceRequest) *time.Duration {
	if r.GetReadinessTimeout() == nil {
		return nil
	}
	d := r.GetReadinessTimeout().AsDuration()
	return &d
}
