package api

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Bounds of a shape, as CreateInstance checks them.
const (
	maxVCPUs     = 64
	minMemoryMiB = 64
	maxMemoryMiB = 262144
	maxDiskGiB   = 65536
)

// validateHostID checks a host id's form (the agents' rule).
func validateHostID(v *violations, field, id string) {
	if !hostIDPat.MatchString(id) {
		v.add(field, "must be a host id: lowercase letters, digits, '.' and '-', at most 63")
	}
}

var hostIDPat = pattern{first: lowerDigit, rest: func(c byte) bool { return lowerDigitDash(c) || c == '.' }, last: lowerDigit, max: 63}

// maxConfirmWindow bounds a resize's automatic confirm: the original takes
// room on its host until then.
const maxConfirmWindow = 7 * 24 * time.Hour

func (s *instances) ResizeInstance(ctx context.Context, r *pb.ResizeInstanceRequest) (*pb.Operation, error) {
	var v violations
	if r.Vcpus < 0 || r.Vcpus > maxVCPUs {
		v.add("vcpus", "must be 0 (keep) or 1..%d", maxVCPUs)
	}
	if r.MemoryMib < 0 || r.MemoryMib > maxMemoryMiB {
		v.add("memory_mib", "must be 0 (keep) or up to %d", maxMemoryMiB)
	}
	if r.MemoryMib > 0 && r.MemoryMib < minMemoryMiB {
		v.add("memory_mib", "must be at least %d", minMemoryMiB)
	}
	if r.DiskGib < 0 || r.DiskGib > maxDiskGiB {
		v.add("disk_gib", "must be 0 (keep) or up to %d", maxDiskGiB)
	}
	if r.Vcpus == 0 && r.MemoryMib == 0 && r.DiskGib == 0 {
		v.add("vcpus", "a resize changes at least one of vcpus, memory_mib, disk_gib")
	}
	var window time.Duration
	if w := r.GetConfirmWindow(); w != nil {
		if err := w.CheckValid(); err != nil {
			v.add("confirm_window", "%v", err)
		} else if window = w.AsDuration(); window < time.Second || window > maxConfirmWindow {
			v.add("confirm_window", "must be 1s..%s when set", maxConfirmWindow)
		}
	}
	if r.TargetHostId != "" {
		validateHostID(&v, "target_host_id", r.TargetHostId)
	}
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	validateID(&v, "id", r.Id)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	inst, err := s.store.Instance(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	to := inst.Spec
	if r.Vcpus > 0 {
		to.VCPUs = uint32(r.Vcpus)
	}
	if r.MemoryMib > 0 {
		to.MemoryMiB = uint64(r.MemoryMib)
	}
	if r.DiskGib > 0 {
		to.DiskGiB = uint64(r.DiskGib)
	}
	switch {
	case to.DiskGiB < inst.Spec.DiskGiB:
		v.add("disk_gib", "a disk never shrinks: it has %d GiB", inst.Spec.DiskGiB)
	case to == inst.Spec:
		v.add("vcpus", "the instance has that shape already")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	req := actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionResize, graceful: graceful, force: true,
		target: r.TargetHostId, resize: &state.Resize{To: to, Window: window}}
	if r.TargetHostId != "" {
		if err := s.checkTarget(&inst, r.TargetHostId); err != nil {
			return nil, toStatus(err)
		}
		return s.act(ctx, req, nil)
	}
	// In place when it fits there (nothing travels); else where the
	// scheduler finds room for the new shape.
	op, err := s.act(ctx, req, nil)
	if status.Code(err) != codes.ResourceExhausted {
		return op, err
	}
	target, err := s.elsewhere(&inst, to)
	if err != nil {
		return nil, toStatus(err)
	}
	req.target = target
	return s.act(ctx, req, nil)
}

func (s *instances) ConfirmResize(ctx context.Context, r *pb.ConfirmResizeRequest) (*pb.Operation, error) {
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionConfirmResize}, nil)
}

func (s *instances) RevertResize(ctx context.Context, r *pb.RevertResizeRequest) (*pb.Operation, error) {
	var v violations
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionRevertResize, graceful: graceful, force: true}, v)
}

func (s *instances) ExtendInstance(ctx context.Context, r *pb.ExtendInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if r.DiskGib <= 0 || r.DiskGib > maxDiskGiB {
		v.add("disk_gib", "must be 1..%d", maxDiskGiB)
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	inst, err := s.store.Instance(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	if uint64(r.DiskGib) <= inst.Spec.DiskGiB {
		v.add("disk_gib", "an extend grows the disk: it has %d GiB", inst.Spec.DiskGiB)
		return nil, invalid(v)
	}
	to := inst.Spec
	to.DiskGiB = uint64(r.DiskGib)
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionExtend,
		resize: &state.Resize{To: to}}, nil)
}

func (s *instances) MoveInstance(ctx context.Context, r *pb.MoveInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if r.TargetHostId != "" {
		validateHostID(&v, "target_host_id", r.TargetHostId)
	}
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	if len(v) > 0 {
		return nil, invalid(v)
	}
	inst, err := s.store.Instance(r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	target := r.TargetHostId
	switch {
	case target == inst.HostID && target != "":
		v.add("target_host_id", "the instance is on %s already", target)
		return nil, invalid(v)
	case target != "":
		err = s.checkTarget(&inst, target)
	default:
		if err = lifecycle.Check(inst.Status(), lifecycle.ActionMove); err == nil {
			target, err = s.elsewhere(&inst, inst.Spec)
		}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return s.act(ctx, actRequest{id: r.Id, requestID: r.RequestId, action: lifecycle.ActionMove, graceful: graceful, force: true,
		target: target}, nil)
}

// checkTarget checks, before anything is proposed, that a named target can
// take part in a disk copy: it exists, and both agents serve other agents.
// Room and readiness are the FSM's to check at commit time.
func (s *instances) checkTarget(inst *state.Instance, target string) error {
	h, err := s.store.Host(target)
	if err != nil {
		return err
	}
	if target == inst.HostID {
		return nil // in place: nothing travels
	}
	src, err := s.store.Host(inst.HostID)
	if err != nil {
		return err
	}
	if h.PeerAddr == "" || src.PeerAddr == "" {
		return fmt.Errorf("host %s or %s does not serve disk copies (no --peer-listen): %w", inst.HostID, target, fsm.ErrHostUnavailable)
	}
	return nil
}

// elsewhere picks another host with room for the instance at spec, among
// those that serve disk copies.
func (s *instances) elsewhere(inst *state.Instance, spec state.Spec) (string, error) {
	src, err := s.store.Host(inst.HostID)
	if err != nil {
		return "", err
	}
	var cands []scheduler.Host
	for _, h := range placement.FromStore(s.store) {
		if dst, err := s.store.Host(h.ID); err == nil && h.ID != inst.HostID && dst.PeerAddr != "" && src.PeerAddr != "" {
			cands = append(cands, h)
		}
	}
	d, err := scheduler.Place(placement.Request(spec, inst.Placement), cands, s.policy)
	if err != nil || len(d.Preempt) > 0 {
		return "", fmt.Errorf("no other host has room for %d vCPUs, %d MiB, %d GiB now: %w",
			spec.VCPUs, spec.MemoryMiB, spec.DiskGiB, fsm.ErrNoCapacity)
	}
	return d.HostID, nil
}
