package api

import (
	"cmp"
	"context"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/hypervisor"
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
	validateRequestID(&v, r.RequestId)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	// Validated above: every size is in range and non-negative.
	op, err := s.svc.Resize(ctx, service.Resize{InstanceID: r.Id, RequestID: r.RequestId, VCPUs: uint32(r.Vcpus),
		MemoryMiB: uint64(r.MemoryMib), DiskGiB: uint64(r.DiskGib), Target: r.TargetHostId, Window: window, Graceful: graceful})
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}

func (s *instances) ConfirmResize(ctx context.Context, r *pb.ConfirmResizeRequest) (*pb.Operation, error) {
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionConfirmResize}, nil)
}

func (s *instances) RevertResize(ctx context.Context, r *pb.RevertResizeRequest) (*pb.Operation, error) {
	var v violations
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	return s.act(ctx, service.Action{InstanceID: r.Id, RequestID: r.RequestId, Action: lifecycle.ActionRevertResize, Graceful: graceful, Force: true}, v)
}

func (s *instances) ExtendInstance(ctx context.Context, r *pb.ExtendInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if r.DiskGib <= 0 || r.DiskGib > maxDiskGiB {
		v.add("disk_gib", "must be 1..%d", maxDiskGiB)
	}
	validateRequestID(&v, r.RequestId)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.svc.Extend(ctx, r.Id, r.RequestId, uint64(r.DiskGib))
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}

func (s *instances) MoveInstance(ctx context.Context, r *pb.MoveInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if r.TargetHostId != "" {
		validateHostID(&v, "target_host_id", r.TargetHostId)
	}
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	validateRequestID(&v, r.RequestId)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.svc.Move(ctx, r.Id, r.RequestId, r.TargetHostId, graceful)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}

func (s *instances) MarkOperational(ctx context.Context, r *pb.MarkOperationalRequest) (*pb.Instance, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	inst, err := s.svc.MarkOperational(ctx, r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.instanceToPB(&inst, nil), nil
}

// The user SetPassword sets a password for when the request names none.
const defaultPasswordUser = "root"

func (s *instances) SetPassword(ctx context.Context, r *pb.SetPasswordRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	validateRequestID(&v, r.RequestId)
	user := cmp.Or(r.User, defaultPasswordUser)
	if !hypervisor.ValidGuestUser(user) {
		v.add("user", "must be a POSIX user name: a lowercase letter or '_', then up to 31 lowercase letters, digits, '_' or '-'")
	}
	// The password itself is never quoted back: it goes in no message.
	if err := hypervisor.CheckGuestPassword(r.Password); err != nil {
		v.add("password", "%v", err)
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkInstance(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.svc.SetPassword(ctx, r.Id, r.RequestId, secrets.NewPassword(user, r.Password))
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}
