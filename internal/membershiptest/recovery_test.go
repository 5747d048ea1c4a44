package membershiptest

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The disaster recovery drill of docs/cluster.md: a three-server cluster
// loses two servers for good, is recovered from the survivor's data dir
// with --recover-single-node, and has every acknowledged write; it then
// takes writes again and a fresh server joins it.
func TestQuorumLossRecoveryDrill(t *testing.T) {
	dir, cs, conns := startCluster(t)
	const n = 40
	for k := 0; k < n; k++ {
		write(t, conns[k%3], k) // through every member: followers relay
	}
	// The survivor is c1. Before disaster strikes, it has applied what the
	// leader committed (the procedure picks the survivor with the highest
	// last index; here every acknowledged write is on all three).
	l := leader(t, cs, conns)
	testenv.Eventually(t, bound, "c1 to have applied every committed write", func() bool {
		ls, err1 := conns[l].cluster.GetNodeStatus(ctx(t), &pb.GetNodeStatusRequest{})
		c1, err2 := conns[0].cluster.GetNodeStatus(ctx(t), &pb.GetNodeStatusRequest{})
		return err1 == nil && err2 == nil && c1.AppliedIndex >= ls.CommitIndex
	})
	cs[1].Kill()
	cs[2].Kill()
	// Without a quorum nothing is written.
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := conns[0].networks.CreateNetwork(c, network(n))
	cancel()
	if err == nil {
		t.Fatal("a write was acknowledged by one server of three")
	}

	// The procedure: stop the survivor, recover its data dir, start it.
	cs[0].Stop()
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), "flotilla-coordinator"), "--recover-single-node",
		"--node-id=c1", "--data-dir="+cs[0].DataDir, "--raft-addr="+cs[0].RaftAddr, "--raft-fast")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--recover-single-node: %v\n%s", err, out)
	}
	cs[0].Restart()
	testenv.Eventually(t, bound, "c1 to lead alone", func() bool {
		got, leaderID, err := tryServers(conns[0])
		return err == nil && leaderID == "c1" && len(got) == 1 && got["c1"].Suffrage == "voter"
	})
	r, err := conns[0].networks.ListNetworks(ctx(t), &pb.ListNetworksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, nw := range r.Networks {
		have[nw.Name] = true
	}
	for k := 0; k < n; k++ {
		if !have[network(k).Name] {
			t.Errorf("acknowledged write %s lost in the recovery", network(k).Name)
		}
	}
	// It takes writes again, and a fresh server joins and becomes a voter.
	write(t, conns[0], n+1)
	c4 := testenv.StartNode(t, dir, "c4", "--raft-fast", "--join="+cs[0].Addr)
	testenv.Eventually(t, bound, "the fresh c4 to be promoted", func() bool {
		got, _ := servers(t, conns[0])
		return len(got) == 2 && got["c4"] != nil && got["c4"].Suffrage == "voter"
	})
	c4conn := dial(t, c4)
	testenv.Eventually(t, bound, "c4 to hold every network", func() bool {
		r, err := c4conn.networks.ListNetworks(ctx(t), &pb.ListNetworksRequest{})
		return err == nil && len(r.Networks) == len(have)+1
	})
	write(t, c4conn, n+2)
}
