package inproc

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// A request id is bound to the request's content: a retry with the same
// content returns the first operation; the same id with other content (or
// on another instance) is refused, naming the first operation; the same id
// for another kind of request is another request.
func TestRequestIDBoundToContent(t *testing.T) {
	c := Start(t, Options{})
	testenv.Eventually(t, Bound, "log version 6", func() bool { return c.Coordinator.Store.LogVersion() >= fsm.LogVersion6 })
	ctx := context.Background()
	req := &pb.CreateInstanceRequest{Name: "web", RequestId: "r-1", Spec: smallSpec}
	first, err := c.Instances.CreateInstance(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Instances.CreateInstance(ctx, req)
	if err != nil || again.GetId() != first.GetId() {
		t.Fatalf("a retry with the same content: %v, %v (want %s)", again.GetId(), err, first.GetId())
	}
	other := &pb.CreateInstanceRequest{Name: "db", RequestId: "r-1", Spec: smallSpec}
	_, err = c.Instances.CreateInstance(ctx, other)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), first.GetId()) {
		t.Fatalf("the same id with other content: %v; want INVALID_ARGUMENT naming %s", err, first.GetId())
	}
	id := c.Wait(first).GetInstanceId()

	// Actions: the same id on another instance is other content.
	second := create(t, c, "web-2", nil)
	stop, err := c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, RequestId: "r-2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: second, RequestId: "r-2"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(status.Convert(err).Message(), stop.GetId()) {
		t.Fatalf("the same id on another instance: %v; want INVALID_ARGUMENT naming %s", err, stop.GetId())
	}
	if again, err := c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, RequestId: "r-2"}); err != nil || again.GetId() != stop.GetId() {
		t.Fatalf("a retried stop: %v, %v (want %s)", again.GetId(), err, stop.GetId())
	}
	// Another kind of request with an id already used is its own request.
	c.Wait(stop)
	start, err := c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: id, RequestId: "r-2"})
	if err != nil || start.GetId() == stop.GetId() {
		t.Fatalf("a start reusing a stop's id: %v, %v", start.GetId(), err)
	}
}
