package membershiptest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// bound is how long a condition may take on a loaded machine.
const bound = 60 * time.Second

// conn is a plaintext connection to one coordinator.
type conn struct {
	cluster  pb.ClusterServiceClient
	networks pb.NetworkServiceClient
}

func dial(t *testing.T, c *testenv.Coordinator) conn {
	t.Helper()
	cc, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return conn{cluster: pb.NewClusterServiceClient(cc), networks: pb.NewNetworkServiceClient(cc)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// servers lists the members as c knows them, by id.
func servers(t *testing.T, c conn) (map[string]*pb.Server, string) {
	t.Helper()
	out, leader, err := tryServers(c)
	if err != nil {
		t.Fatalf("list servers: %v", err)
	}
	return out, leader
}

// tryServers is servers for a server that may not answer yet.
func tryServers(c conn) (map[string]*pb.Server, string, error) {
	cc, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.cluster.ListServers(cc, &pb.ListServersRequest{})
	if err != nil {
		return nil, "", err
	}
	out := map[string]*pb.Server{}
	for _, s := range r.Servers {
		out[s.Id] = s
	}
	return out, r.LeaderId, nil
}

// leader waits for a leader and returns its index in cs.
func leader(t *testing.T, cs []*testenv.Coordinator, conns []conn) int {
	t.Helper()
	idx := -1
	testenv.Eventually(t, bound, "a leader", func() bool {
		for i := range conns {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := conns[i].cluster.GetNodeStatus(c, &pb.GetNodeStatusRequest{})
			cancel()
			if err == nil && st.RaftState == "Leader" {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// network is the k-th test network: a name and a /24 of its own.
func network(k int) *pb.CreateNetworkRequest {
	return &pb.CreateNetworkRequest{Name: fmt.Sprintf("net-%d", k), Cidr: fmt.Sprintf("10.%d.%d.0/24", 100+k/256, k%256), Mode: pb.NetworkMode_NETWORK_MODE_NAT}
}

// write creates network k through c, retrying while the cluster has no
// leader for a while (an election), and fails the test if it never commits.
func write(t *testing.T, c conn, k int) {
	t.Helper()
	var last error
	testenv.Eventually(t, bound, fmt.Sprintf("network %d to be created", k), func() bool {
		cc, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, last = c.networks.CreateNetwork(cc, network(k))
		// A retry of a create that did commit finds it there.
		return last == nil || status.Code(last) == codes.AlreadyExists
	})
}
