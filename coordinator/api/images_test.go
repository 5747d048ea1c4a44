package api

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The image service checks its requests' fields (INVALID_ARGUMENT naming
// the field) before anything is committed, and refuses to delete an image
// an instance uses, naming the instance.
func TestImageService(t *testing.T) {
	w := newWrites(t, nil)
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion11})
	w.apply(fsm.TypeImagesHeld, fsm.ImagesHeld{HostID: "h1", Images: []fsm.ImageFile{{Name: "img", Format: "qcow2", SHA256: "ab"}}})
	s := &images{core: w.inst.core}
	ctx := context.Background()
	rev := w.store.Revision()
	for _, c := range []struct {
		what  string
		req   *pb.ImportImageRequest
		code  codes.Code
		field string
	}{
		{"bad name", &pb.ImportImageRequest{Name: "a/b", HostId: "h2", Path: "x"}, codes.InvalidArgument, "name"},
		{"bad host", &pb.ImportImageRequest{Name: "a", HostId: "H 2", Path: "x"}, codes.InvalidArgument, "host_id"},
		{"no source", &pb.ImportImageRequest{Name: "a", HostId: "h2"}, codes.InvalidArgument, "path"},
		{"two sources", &pb.ImportImageRequest{Name: "a", HostId: "h2", Path: "x", FromHostId: "h1"}, codes.InvalidArgument, "from_host_id"},
		{"absolute path", &pb.ImportImageRequest{Name: "a", HostId: "h2", Path: "/etc/shadow"}, codes.InvalidArgument, "path"},
		{"path with ..", &pb.ImportImageRequest{Name: "a", HostId: "h2", Path: "up/../../x"}, codes.InvalidArgument, "path"},
		{"from itself", &pb.ImportImageRequest{Name: "img", HostId: "h1", FromHostId: "h1"}, codes.InvalidArgument, "from_host_id"},
		{"unknown host", &pb.ImportImageRequest{Name: "a", HostId: "h9", Path: "x"}, codes.NotFound, ""},
		{"from a host without it", &pb.ImportImageRequest{Name: "img", HostId: "h1", FromHostId: "h2"}, codes.FailedPrecondition, ""},
	} {
		_, err := s.ImportImage(ctx, c.req)
		refused(t, c.what, err, c.code, c.field)
	}
	if w.store.Revision() != rev {
		t.Fatal("a refused import changed the state")
	}
	im, err := s.ImportImage(ctx, &pb.ImportImageRequest{Name: "img", HostId: "h2", FromHostId: "h1"})
	if err != nil || im.Status != pb.ImageStatus_IMAGE_STATUS_AVAILABLE || len(im.Imports) != 1 || im.Imports[0].FromHostId != "h1" {
		t.Fatalf("import from h1: %v, %v", im, err)
	}
	list, err := s.ListImages(ctx, &pb.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 || list.Images[0].Sha256 != "ab" || strings.Join(list.Images[0].Hosts, ",") != "h1" {
		t.Fatalf("list: %v, %v", list, err)
	}
	if _, err := s.GetImage(ctx, &pb.GetImageRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get of an unknown image: %v", err)
	}

	op, err := w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "web", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "img"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.DeleteImage(ctx, &pb.DeleteImageRequest{Name: "img"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), op.InstanceId) {
		t.Fatalf("delete of an image in use: %v (want FAILED_PRECONDITION naming %s)", err, op.InstanceId)
	}
	if _, err := s.DeleteImage(ctx, &pb.DeleteImageRequest{Name: "../x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("delete of a bad name: %v", err)
	}
}
