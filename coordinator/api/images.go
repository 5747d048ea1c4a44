package api

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/hypervisor"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type images struct {
	*core
	pb.UnimplementedImageServiceServer
}

const imageNameRule = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"

func validateImageName(v *violations, field, name string) {
	if hypervisor.ValidateImageName(name) != nil {
		v.add(field, imageNameRule)
	}
}

func (s *images) ListImages(ctx context.Context, r *pb.ListImagesRequest) (*pb.ListImagesResponse, error) {
	all, _ := s.store.Images()
	out := &pb.ListImagesResponse{}
	for i := range all {
		out.Images = append(out.Images, convert.ImageToPB(&all[i]))
	}
	return out, nil
}

func (s *images) GetImage(ctx context.Context, r *pb.GetImageRequest) (*pb.Image, error) {
	var v violations
	validateImageName(&v, "name", r.Name)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	im, err := s.store.Image(r.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.ImageToPB(&im), nil
}

func (s *images) ImportImage(ctx context.Context, r *pb.ImportImageRequest) (*pb.Image, error) {
	var v violations
	validateImageName(&v, "name", r.Name)
	validateHostID(&v, "host_id", r.HostId)
	switch {
	case r.Path == "" && r.FromHostId == "":
		v.add("path", "one of path and from_host_id is required")
	case r.Path != "" && r.FromHostId != "":
		v.add("from_host_id", "give either path or from_host_id, not both")
	case r.Path != "":
		if err := fsm.CheckImagePath(r.Path); err != nil || len(r.Path) > 4096 {
			v.add("path", "must be a path inside the host's image directory, relative to it, without '..'")
		}
	case !hostIDPat.MatchString(r.FromHostId):
		validateHostID(&v, "from_host_id", r.FromHostId)
	case r.FromHostId == r.HostId:
		v.add("from_host_id", "must be another host than host_id")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	im, err := s.svc.ImportImage(ctx, r.Name, r.HostId, r.Path, r.FromHostId)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.ImageToPB(&im), nil
}

func (s *images) DeleteImage(ctx context.Context, r *pb.DeleteImageRequest) (*pb.DeleteImageResponse, error) {
	var v violations
	validateImageName(&v, "name", r.Name)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.svc.DeleteImage(ctx, r.Name); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteImageResponse{}, nil
}
