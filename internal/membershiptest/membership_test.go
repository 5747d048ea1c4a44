package membershiptest

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// startCluster starts three coordinators, all voters, and dials them.
func startCluster(t *testing.T) (string, []*testenv.Coordinator, []conn) {
	t.Helper()
	dir := t.TempDir()
	cs := testenv.StartCluster(t, dir, 3)
	conns := make([]conn, len(cs))
	for i, c := range cs {
		conns[i] = dial(t, c)
	}
	return dir, cs, conns
}

// A made-up server added by any client (its Raft address answers nothing)
// stays a non-voter, while a real server that joins after it is promoted;
// so the cluster keeps its quorum when one real server then dies. (Before:
// it was added as a voter at once, and with one real server down the
// cluster had no quorum left.)
func TestMadeUpServerNeverVotes(t *testing.T) {
	dir, cs, conns := startCluster(t)
	l := leader(t, cs, conns)
	via := conns[(l+1)%3] // a follower relays it, as any client's call may be
	if _, err := via.cluster.AddServer(ctx(t), &pb.AddServerRequest{Id: "ghost", RaftAddress: testenv.FreeAddr(t), ApiAddress: testenv.FreeAddr(t), LogVersionMax: fsm.SupportedLogVersion}); err != nil {
		t.Fatalf("add a made-up server: %v", err)
	}
	got, _ := servers(t, conns[l])
	if g := got["ghost"]; g == nil || g.Suffrage != "nonvoter" || g.Live || g.CaughtUp {
		t.Fatalf("the made-up server right after AddServer: %v", g)
	}

	// A real server joins after it and is promoted once caught up.
	c4 := testenv.StartNode(t, dir, "c4", "--raft-fast", "--join="+cs[l].Addr)
	testenv.Eventually(t, bound, "c4 to be promoted", func() bool {
		got, _ := servers(t, conns[l])
		return got["c4"] != nil && got["c4"].Suffrage == "voter"
	})
	got, _ = servers(t, conns[l])
	if g := got["ghost"]; g.Suffrage != "nonvoter" || g.Live || g.LastContact != nil {
		t.Fatalf("the made-up server outlived a real server's promotion as %v", g)
	}
	if c := got["c4"]; !c.Live || !c.CaughtUp || c.LastIndex == 0 {
		t.Errorf("the promoted server's catch-up state: %v", c)
	}

	// Four voters, one dies: three of four is still a quorum.
	cs[(l+1)%3].Kill()
	write(t, conns[l], 1)
	c4conn := dial(t, c4)
	if _, err := c4conn.networks.GetNetwork(ctx(t), &pb.GetNetworkRequest{Name: network(1).Name}); err != nil {
		// Reads are local: c4 may lag a moment behind the write.
		testenv.Eventually(t, bound, "c4 to apply the write", func() bool {
			_, err := c4conn.networks.GetNetwork(ctx(t), &pb.GetNetworkRequest{Name: network(1).Name})
			return err == nil
		})
	}
}

// Re-adding the leader's id with other addresses (plaintext: nobody's
// identity is verified) is refused, and so is a new id on the leader's
// Raft address; the leader's addresses are unchanged. (Before: followers
// then relayed writes, and agents were redirected, to the new address.)
func TestAddressTakeoverRefused(t *testing.T) {
	_, cs, conns := startCluster(t)
	l := leader(t, cs, conns)
	before, leaderID := servers(t, conns[l])
	via := conns[(l+1)%3]
	for _, req := range []*pb.AddServerRequest{
		{Id: leaderID, RaftAddress: testenv.FreeAddr(t), ApiAddress: testenv.FreeAddr(t)},
		{Id: leaderID, RaftAddress: before[leaderID].RaftAddress, ApiAddress: testenv.FreeAddr(t)},
		{Id: "evil", RaftAddress: before[leaderID].RaftAddress, ApiAddress: testenv.FreeAddr(t)},
		{Id: "evil", RaftAddress: testenv.FreeAddr(t), ApiAddress: before[leaderID].ApiAddress},
	} {
		req.LogVersionMax = fsm.SupportedLogVersion
		_, err := via.cluster.AddServer(ctx(t), req)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("AddServer %v: %v, want FAILED_PRECONDITION", req, err)
		}
	}
	// The same member with the same addresses is still a harmless no-op
	// (a restarted server's --join does it).
	same := before[leaderID]
	if _, err := via.cluster.AddServer(ctx(t), &pb.AddServerRequest{Id: same.Id, RaftAddress: same.RaftAddress, ApiAddress: same.ApiAddress, LogVersionMax: fsm.SupportedLogVersion}); err != nil {
		t.Errorf("re-adding the leader with its own addresses: %v", err)
	}
	for i := range conns {
		after, _ := servers(t, conns[i])
		if len(after) != 3 || after[leaderID].RaftAddress != same.RaftAddress || after[leaderID].ApiAddress != same.ApiAddress {
			t.Errorf("%s lists %v after the takeover attempts", cs[i].Name, after)
		}
	}
	// A write through a follower still reaches the real leader.
	write(t, via, 1)
}

// With one of three voters dead for good, removing a live one would leave
// one live voter of two, no quorum: refused, naming why. Removing the dead
// one is allowed, and the two go on.
func TestQuorumBreakingRemoveRefused(t *testing.T) {
	_, cs, conns := startCluster(t)
	l := leader(t, cs, conns)
	live, dead := (l+1)%3, (l+2)%3
	cs[dead].Kill()
	// The leader notices within its liveness bound (about a second here).
	testenv.Eventually(t, bound, "the leader to see the dead voter silent", func() bool {
		got, _ := servers(t, conns[l])
		return got[cs[dead].Name] != nil && !got[cs[dead].Name].Live
	})
	_, err := conns[l].cluster.RemoveServer(ctx(t), &pb.RemoveServerRequest{Id: cs[live].Name})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("removing a live voter with another dead: %v, want FAILED_PRECONDITION naming the quorum", err)
	}
	got, _ := servers(t, conns[l])
	if len(got) != 3 || got[cs[dead].Name].Live || !got[cs[live].Name].Live {
		t.Fatalf("members after the refusal: %v", got)
	}
	// The leader itself may not be removed either: one live voter of two.
	if _, err := conns[l].cluster.RemoveServer(ctx(t), &pb.RemoveServerRequest{Id: cs[l].Name}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("removing the leader with a voter dead: %v", err)
	}
	if _, err := conns[l].cluster.RemoveServer(ctx(t), &pb.RemoveServerRequest{Id: cs[dead].Name}); err != nil {
		t.Fatalf("removing the dead voter: %v", err)
	}
	write(t, conns[live], 1)
}
