package node

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// A member that has lost its leader for good (one of two voters left)
// says NOT_SERVING and refuses reads as stale, while ClusterService still
// answers (it says why); health and reads were SERVING and served before.
func TestLeaderlessMemberTellsTheTruth(t *testing.T) {
	a := Config{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true}
	b := Config{NodeID: "c2", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Join: a.APIAddr, StaleReadBound: bound / 20}
	n1 := start(t, a)
	testenv.Eventually(t, bound, "c1 to lead", n1.IsLeader)
	n2 := start(t, b)
	conn, err := grpc.NewClient(n2.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, ic, cc := healthpb.NewHealthClient(conn), pb.NewInstanceServiceClient(conn), pb.NewClusterServiceClient(conn)
	ctx := context.Background()
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && r.Status == want
		}
	}
	testenv.Eventually(t, bound, "c2 to follow c1 and say SERVING", func() bool {
		_, id := n2.Raft.Leader()
		return id == "c1" && serving(healthpb.HealthCheckResponse_SERVING)()
	})
	if _, err := ic.ListInstances(ctx, &pb.ListInstancesRequest{}); err != nil {
		t.Fatalf("a read with a leader: %v", err)
	}
	n1.Close()
	testenv.Eventually(t, bound, "c2, leaderless, to say NOT_SERVING", serving(healthpb.HealthCheckResponse_NOT_SERVING))
	testenv.Eventually(t, bound, "c2 to refuse reads as stale", func() bool {
		_, err := ic.ListInstances(ctx, &pb.ListInstancesRequest{})
		return status.Code(err) == codes.Unavailable
	})
	if _, err := cc.GetNodeStatus(ctx, &pb.GetNodeStatusRequest{}); err != nil {
		t.Fatalf("GetNodeStatus on a leaderless member: %v", err)
	}
}
