package node

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func start(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.FastRaft, cfg.Logger = true, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.NodeID)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// bound is how long a condition may take, on a loaded machine.
const bound = 20 * time.Second

func client(t *testing.T, addr string) pb.ClusterServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewClusterServiceClient(conn)
}

// A rolling upgrade, in process: three servers of the previous release
// (standing for it, they support log version 1 only) are upgraded one at a
// time. While any server is old, the cluster stays at version 1: the
// leader does not propose the version change (nor so any command of
// version 2). Once the last is upgraded, the leader raises it on every
// server; a server of the previous release is then refused if it asks to
// join.
func TestLogVersionWaitsForEveryServer(t *testing.T) {
	cfgs := []Config{
		{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true, LogVersionMax: 1},
		{NodeID: "c2", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), LogVersionMax: 1},
		{NodeID: "c3", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), LogVersionMax: 1},
	}
	cfgs[1].Join, cfgs[2].Join = cfgs[0].APIAddr, cfgs[0].APIAddr
	nodes := []*Node{start(t, cfgs[0])}
	testenv.Eventually(t, bound, "c1 to lead", nodes[0].IsLeader)
	nodes = append(nodes, start(t, cfgs[1]), start(t, cfgs[2]))
	// Joining servers are non-voters until caught up for a while (1 s
	// with fast timeouts); stopping one before would lose the quorum.
	testenv.Eventually(t, bound, "three voters with their addresses", func() bool {
		m, _ := gateCluster{nodes[0]}.Members()
		voters, _, _ := promoterCluster{nodes[0].Raft}.Members()
		n := 0
		for _, v := range voters {
			if v.Voter {
				n++
			}
		}
		return len(m) == 3 && n == 3 && m[0].APIAddr != "" && m[1].APIAddr != "" && m[2].APIAddr != ""
	})
	ctx := context.Background()
	upgrade := func(k int, maxVersion uint32) {
		t.Helper()
		if err := nodes[k].Close(); err != nil {
			t.Fatal(err)
		}
		// Same data, same addresses: the server is replaced in place.
		cfgs[k].LogVersionMax, cfgs[k].Bootstrap = maxVersion, false
		cfgs[k].Join = cfgs[(k+1)%3].APIAddr
		nodes[k] = start(t, cfgs[k])
	}
	leader := func() *Node {
		var l *Node
		testenv.Eventually(t, bound, "a leader", func() bool {
			for _, n := range nodes {
				if n.IsLeader() {
					l = n
					return true
				}
			}
			return false
		})
		return l
	}
	atVersion := func(v uint32) bool {
		for _, n := range nodes {
			if n.Raft.LogVersion() != v {
				return false
			}
		}
		return true
	}
	upgrade(2, 0)
	upgrade(1, 0)
	// c1, still old, is the last: down and back (as old) so that a new
	// server leads, which then must not raise the version.
	if err := nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, bound, "c2 or c3 to lead", func() bool { return nodes[1].IsLeader() || nodes[2].IsLeader() })
	upgrade(0, 1)
	if st, err := client(t, cfgs[0].APIAddr).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{}); err != nil || st.LogVersionMax != 1 || st.LogVersion != 1 {
		t.Fatalf("the old server's status: %v %v", st, err)
	}
	l := leader()
	if l == nodes[0] {
		l = nodes[1] // the old server leads again: its gate stops at 1; ask a new one's
	}
	if v, err := l.gate.Raise(ctx); v != fsm.LogVersion1 || err == nil {
		t.Fatalf("with an old server the version was raised to %d (%v)", v, err)
	}
	if !atVersion(fsm.LogVersion1) {
		t.Fatal("a server is past log version 1 while one is old")
	}

	upgrade(0, 0)
	testenv.Eventually(t, bound, "every server at the newest log version", func() bool { return atVersion(fsm.SupportedLogVersion) })
	st, err := client(t, cfgs[1].APIAddr).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{})
	if err != nil || st.LogVersion != fsm.SupportedLogVersion || st.LogVersionMax != fsm.SupportedLogVersion {
		t.Fatalf("status after the upgrade: %v %v", st, err)
	}
	// A server of the previous release (it does not send log_version_max)
	// cannot join any more; the membership is unchanged.
	_, err = client(t, leader().Addr()).AddServer(ctx, &pb.AddServerRequest{Id: "c4", RaftAddress: testenv.FreeAddr(t), ApiAddress: testenv.FreeAddr(t)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("an old server joining an upgraded cluster: %v", err)
	}
	if m, _ := leader().Raft.Members(); len(m) != 3 {
		t.Fatalf("members after the refused join: %v", m)
	}
}
