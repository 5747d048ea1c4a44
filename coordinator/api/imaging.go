package api

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/hypervisor"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func (s *instances) RebuildInstance(ctx context.Context, r *pb.RebuildInstanceRequest) (*pb.Operation, error) {
	return s.image(ctx, r.Id, r.RequestId, "image", r.Image, false, lifecycle.ActionRebuild)
}

func (s *instances) RescueInstance(ctx context.Context, r *pb.RescueInstanceRequest) (*pb.Operation, error) {
	return s.image(ctx, r.Id, r.RequestId, "rescue_image", r.RescueImage, false, lifecycle.ActionRescue)
}

func (s *instances) UnrescueInstance(ctx context.Context, r *pb.UnrescueInstanceRequest) (*pb.Operation, error) {
	return s.image(ctx, r.Id, r.RequestId, "", "", false, lifecycle.ActionUnrescue)
}

func (s *instances) BundleInstance(ctx context.Context, r *pb.BundleInstanceRequest) (*pb.Operation, error) {
	return s.image(ctx, r.Id, r.RequestId, "image", r.Image, true, lifecycle.ActionBundle)
}

// image validates and runs a rebuild, rescue, unrescue or bundle; field
// names the request's image field ("" for none).
func (s *instances) image(ctx context.Context, id, requestID, field, img string, required bool, a lifecycle.Action) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", id)
	validateRequestID(&v, requestID)
	switch {
	case field != "" && img == "" && required:
		v.add(field, "is required")
	case field != "" && img != "" && hypervisor.ValidateImageName(img) != nil:
		v.add(field, "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	op, err := s.svc.Image(ctx, service.Imaging{InstanceID: id, RequestID: requestID, Action: a, Image: img})
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}
