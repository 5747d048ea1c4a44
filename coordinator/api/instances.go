package api

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	// A watcher that sees every instance as it is gets each revision's
	// message encoded once for all such watchers (watchfeed); others
	// convert and encode their own.
	shared := s.encoded != nil && r.InstanceId == "" && len(vocabs) == 0 && seesAll(ctx)
	// One message per revision, with every matching change in it. The
	// history is read a page at a time, its records shared (not copied),
	// so a watcher replaying a long history holds one page at a time; a
	// page ends at a revision's end.
	for {
		changes, changed, more, err := s.store.Changes(rev, watchPage)
		if err != nil {
			return toStatus(err)
		}
		leave := func() {}
		if len(changes) > watchPaced {
			if leave, err = s.gate.Enter(ctx); err != nil {
				return nil // the watcher went
			}
		}
		if err := s.sendChanges(ctx, stream, r.InstanceId, vocabs, shared, changes); err != nil {
			leave()
			return err
		}
		leave()
		if len(changes) > 0 {
			rev = changes[len(changes)-1].Revision
		}
		if more {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// sendChanges sends a page of changes, one message per revision.
func (s *instances) sendChanges(ctx context.Context, stream pb.InstanceService_WatchInstancesServer, id string, vocabs []vocabulary.Vocabulary, shared bool, changes []state.Change) error {
	for len(changes) > 0 {
		n := 1
		for n < len(changes) && changes[n].Revision == changes[0].Revision {
			n++
		}
		one := changes[:n]
		changes = changes[n:]
		if shared {
			b, err := s.feed.Get(one[0].Revision, func() ([]byte, error) { return proto.Marshal(s.watchMessage(ctx, one, "", nil)) })
			if err != nil {
				return status.Errorf(codes.Internal, "encode revision %d: %v", one[0].Revision, err)
			}
			if err := stream.SendMsg(s.encoded(b)); err != nil {
				return err
			}
			continue
		}
		if msg := s.watchMessage(ctx, one, id, vocabs); len(msg.Instances) > 0 {
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
	return nil
}

// watchMessage is one revision's message: its changes that the caller
// sees (of one instance, if id is set).
func (s *instances) watchMessage(ctx context.Context, changes []state.Change, id string, vocabs []vocabulary.Vocabulary) *pb.WatchInstancesResponse {
	msg := &pb.WatchInstancesResponse{Revision: changes[0].Revision}
	for _, e := range changes {
		if (id == "" || e.Instance.ID == id) && seesInstance(ctx, e.Instance) {
			msg.Instances = append(msg.Instances, s.instanceToPB(e.Instance, vocabs))
		}
	}
	return msg
}

// watchPage is how many history changes a watcher reads at once.
const watchPage = 512

// watchPaced: a page of more changes than this is a replay of history,
// sent through the gate (watchfeed.Gate); a watcher keeping up gets a
// few changes a page and is not held back.
const watchPaced = 16

// readyTimeout is a create's readiness timeout: nil when it gives none.
func readyTimeout(r *pb.CreateInstanceRequest) *time.Duration {
	if r.GetReadinessTimeout() == nil {
		return nil
	}
	d := r.GetReadinessTimeout().AsDuration()
	return &d
}
