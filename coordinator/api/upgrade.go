package api

import (
	"context"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// maxHealthTimeout bounds an upgrade's wait for a healthy guest.
const maxHealthTimeout = time.Hour

func (s *instances) UpgradeInstance(ctx context.Context, r *pb.UpgradeInstanceRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	validateRequestID(&v, r.RequestId)
	if r.Image != "" && (!imagePat.MatchString(r.Image) || strings.Contains(r.Image, "..")) {
		v.add("image", "must name an image in the image directory: letters, digits, '.', '_' and '-', no path separators or '..'")
	}
	if r.Vcpus < 0 || r.Vcpus > maxVCPUs {
		v.add("vcpus", "must be 0 (keep) or 1..%d", maxVCPUs)
	}
	if r.MemoryMib < 0 || r.MemoryMib > maxMemoryMiB || r.MemoryMib > 0 && r.MemoryMib < minMemoryMiB {
		v.add("memory_mib", "must be 0 (keep) or %d..%d", minMemoryMiB, maxMemoryMiB)
	}
	if r.Image == "" && r.Vcpus == 0 && r.MemoryMib == 0 {
		v.add("image", "an upgrade changes at least one of image, vcpus, memory_mib")
	}
	var health time.Duration
	if h := r.GetHealthTimeout(); h != nil {
		if health = h.AsDuration(); health <= 0 || health > maxHealthTimeout {
			v.add("health_timeout", "must be positive and at most %s", maxHealthTimeout)
		}
	}
	graceful := stopGraceful(&v, &pb.StopInstanceRequest{GracefulTimeout: r.GracefulTimeout})
	if len(v) > 0 {
		return nil, invalid(v)
	}
	op, err := s.svc.Upgrade(ctx, service.Upgrade{InstanceID: r.Id, RequestID: r.RequestId, Image: r.Image,
		VCPUs: uint32(r.Vcpus), MemoryMiB: uint64(r.MemoryMib), Health: health, Graceful: graceful})
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}
