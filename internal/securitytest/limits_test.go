package securitytest

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// One caller is held to --limit-rate (RESOURCE_EXHAUSTED with a RetryInfo
// hint; streams are limited alike, see coordinator/limits); a create asking for thousands of placement
// labels (two of them made every ListInstances exceed 4 MiB) is refused.
func TestOneCallerBounded(t *testing.T) {
	dir := t.TempDir()
	coord := testenv.StartCoordinator(t, dir, "--limit-rate=2", "--limit-burst=5")
	coord.WaitReady(t, testenv.NewGrpcurl(t, coord.Addr))
	conn := dial(t, coord.Addr, mtls.Files{})
	hosts := pb.NewHostServiceClient(conn)
	var limited error
	for range 50 {
		if _, err := hosts.ListHosts(ctx(t), &pb.ListHostsRequest{}); err != nil {
			limited = err
			break
		}
	}
	st := status.Convert(limited)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("50 calls at once against --limit-rate=2: %v", limited)
	}
	hint := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay.AsDuration() > 0 {
			hint = true
		}
	}
	if !hint {
		t.Fatalf("no RetryInfo in %v", st.Proto())
	}

	inst := pb.NewInstanceServiceClient(conn)
	flood := map[string]string{}
	for i := range 30000 {
		flood[fmt.Sprint("k", i)] = "v"
	}
	testenv.Eventually(t, 30*time.Second, "the label flood refused", func() bool {
		_, err := inst.CreateInstance(ctx(t), &pb.CreateInstanceRequest{Name: "flood", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
			Placement: &pb.Placement{HostLabels: flood}})
		return status.Code(err) == codes.InvalidArgument
	})
}
