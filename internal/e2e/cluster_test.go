package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// clients holds one gRPC connection per coordinator.
type clients struct {
	addrs []string
	conns []*grpc.ClientConn
}

func dialAll(t *testing.T, cs []*testenv.Coordinator) *clients {
	t.Helper()
	c := &clients{}
	for _, n := range cs {
		conn, err := grpc.NewClient(n.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.addrs = append(c.addrs, n.Addr)
		c.conns = append(c.conns, conn)
	}
	return c
}

func (c *clients) inst(i int) pb.InstanceServiceClient {
	return pb.NewInstanceServiceClient(c.conns[i])
}
func (c *clients) ops(i int) pb.OperationServiceClient {
	return pb.NewOperationServiceClient(c.conns[i])
}
func (c *clients) cluster(i int) pb.ClusterServiceClient {
	return pb.NewClusterServiceClient(c.conns[i])
}

// startFakeCluster starts n coordinators and one agent on the fake
// hypervisor (the fake stands in for hosts here: these tests are about the
// coordinators), and waits for a leader and a READY host.
func startFakeCluster(t *testing.T, n int, extra ...string) ([]*testenv.Coordinator, *clients, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster test: not run with -short")
	}
	dir := t.TempDir()
	cs := testenv.StartCluster(t, dir, n, extra...)
	cl := dialAll(t, cs)
	waitMembers(t, cl, 0, n)
	all := ""
	for i, c := range cs {
		if i > 0 {
			all += ","
		}
		all += c.Addr
	}
	// A roomy fake host: these tests create hundreds of small instances.
	testenv.StartAgent(t, dir, all, "fake-1", "fake", "--vcpus=100000", "--memory-mib=100000000")
	g := testenv.NewGrpcurl(t, cs[0].Addr)
	testenv.WaitHost(t, g, "fake-1", 0)
	return cs, cl, dir
}

func waitMembers(t *testing.T, cl *clients, via, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d members with a leader", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cl.cluster(via).ListServers(ctx, &pb.ListServersRequest{})
		return err == nil && len(r.Servers) == n && r.LeaderId != ""
	})
}

// leaderIndex asks each reachable server who leads.
func leaderIndex(t *testing.T, cs []*testenv.Coordinator, cl *clients) int {
	t.Helper()
	idx := -1
	testenv.Eventually(t, 30*time.Second, "a leader", func() bool {
		for i := range cs {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			st, err := cl.cluster(i).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{})
			cancel()
			if err == nil && st.StateDigest != "" {
				t.Fatalf("%s hashed its whole state for a status call that did not ask for it", st.NodeId)
			}
			if err == nil && st.RaftState == "Leader" {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// converged waits until every server is at the same revision with the same
// state digest, and returns that revision.
func converged(t *testing.T, cl *clients) int64 {
	t.Helper()
	var rev int64
	var last []string
	defer func() {
		if t.Failed() {
			t.Logf("last view of the servers: %v", last)
		}
	}()
	testenv.Eventually(t, 60*time.Second, "all servers to converge", func() bool {
		digests := map[string]bool{}
		last = last[:0]
		for i := range cl.conns {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := cl.cluster(i).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{IncludeDigest: true})
			cancel()
			if err != nil {
				return false
			}
			if len(st.StateDigest) != 64 {
				t.Fatalf("%s: state digest %q asked for, not a SHA-256", st.NodeId, st.StateDigest)
			}
			digests[fmt.Sprint(st.Revision, "/", st.StateDigest)] = true
			last = append(last, fmt.Sprintf("%s rev %d digest %.12s", st.NodeId, st.Revision, st.StateDigest))
			rev = st.Revision
		}
		return len(digests) == 1
	})
	t.Logf("converged: %v", last)
	return rev
}

// watcher follows WatchInstances across server failures, resuming from the
// last revision it saw on whichever server answers.
type watcher struct {
	mu     sync.Mutex
	events []*pb.WatchInstancesResponse
	gaps   []string
}

func (w *watcher) run(ctx context.Context, cl *clients, from int64) {
	rev := from
	for i := 0; ctx.Err() == nil; i++ {
		stream, err := cl.inst(i%len(cl.conns)).WatchInstances(ctx, &pb.WatchInstancesRequest{StartRevision: rev})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				break
			}
			w.mu.Lock()
			if ev.Revision <= rev {
				w.gaps = append(w.gaps, fmt.Sprintf("revision %d after %d", ev.Revision, rev))
			}
			if len(ev.Instances) == 0 {
				w.gaps = append(w.gaps, fmt.Sprintf("empty message at revision %d", ev.Revision))
			}
			rev = ev.Revision
			w.events = append(w.events, ev)
			w.mu.Unlock()
		}
	}
}

// TestKillLeaderUnderLoadLosesNothing creates instances from concurrent
// clients, through every server, while the leader is SIGKILLed and later
// restarted. Every acknowledged create must exist exactly once on every
// server, no request_id may produce two operations, and a watch resumed
// across the failures must have seen every instance's final state.
func TestKillLeaderUnderLoadLosesNothing(t *testing.T) {
	cs, cl, _ := startFakeCluster(t, 3)
	start, err := cl.inst(0).ListInstances(context.Background(), &pb.ListInstancesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	w := &watcher{}
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.run(wctx, cl, start.Revision) }()

	var mu sync.Mutex
	acked := map[string]string{} // request id -> operation id
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	const workers = 8
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				rid := fmt.Sprintf("w%d-%d", wk, n)
				req := &pb.CreateInstanceRequest{Name: fmt.Sprintf("w%d-%d", wk, n), RequestId: rid, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}}
				if op, ok := retried(t, ctx, cl, rid, func(ctx context.Context, i int) (*pb.Operation, error) { return cl.inst(i).CreateInstance(ctx, req) }); ok {
					mu.Lock()
					acked[rid] = op.Id
					mu.Unlock()
				}
			}
		}()
	}

	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	wait := func(n int) {
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d acknowledged creates", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= n
		})
	}
	wait(40)
	leader := leaderIndex(t, cs, cl)
	t.Logf("killing leader %s", cs[leader].Name)
	cs[leader].Kill()
	wait(count() + 40) // the survivors keep taking writes
	t.Logf("restarting %s", cs[leader].Name)
	cs[leader].Restart()
	wait(count() + 40)
	stop()
	wg.Wait()
	if t.Failed() {
		return
	}
	// The agent followed the leader through both changes: every acknowledged
	// create ran on the host and finished. Waited for (once every server is
	// back) before comparing the servers, so that the state compared is the
	// final one rather than one the agent is still changing.
	converged(t, cl)
	for rid, id := range acked {
		op := waitDone(t, cl, id)
		if op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
			t.Errorf("operation %s (request %s) ended %s: %v", id, rid, op.State, op.Error)
		}
	}
	rev := converged(t, cl)

	operationsOnce(t, cs, cl, acked)

	// The resumed watch: no revision twice or backwards, and folding its
	// events up to a listed revision gives each instance's state as listed
	// there. Compared at the list's own revision: an observation from the
	// host may still move the state on after the servers converged.
	all, err := cl.inst(0).ListInstances(context.Background(), &pb.ListInstancesRequest{PageSize: 1000, MinRevision: rev})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the watch to catch up", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.events) > 0 && w.events[len(w.events)-1].Revision >= all.Revision
	})
	stopWatch()
	<-watchDone
	last := map[string]*pb.Instance{}
	for _, ev := range w.events {
		if ev.Revision > all.Revision {
			break
		}
		for _, inst := range ev.Instances {
			last[inst.Id] = inst
		}
	}
	if len(w.gaps) > 0 {
		t.Errorf("watch went backwards or repeated: %v", w.gaps)
	}
	for _, inst := range all.Instances {
		got, ok := last[inst.Id]
		if !ok {
			t.Errorf("the watch never saw instance %s", inst.Id)
			continue
		}
		if got.ModifyRevision != inst.ModifyRevision || got.Status != inst.Status {
			t.Errorf("watch's view of %s at rev %d is rev %d %s, server has rev %d %s", inst.Id, all.Revision, got.ModifyRevision, got.Status, inst.ModifyRevision, inst.Status)
		}
	}
	t.Logf("%d creates acknowledged, %d instances, %d watch events, final revision %d", len(acked), len(all.Instances), len(w.events), rev)
}

// retried sends a write to random servers, with the same request id, until
// one acknowledges it, as a careful client does; it stops trying once ctx
// ends. A call under way then is not cut short: its answer still counts.
func retried(t *testing.T, ctx context.Context, cl *clients, rid string, call func(ctx context.Context, i int) (*pb.Operation, error)) (*pb.Operation, bool) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		op, err := call(cctx, rand.IntN(len(cl.conns)))
		cancel()
		if err == nil {
			return op, true
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Canceled {
			t.Errorf("request %s: unexpected %v", rid, err)
			return nil, false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, false
}

// operationsOnce checks, on every server, that each acknowledged operation
// (request id -> operation id) is listed exactly once and that no request
// id produced two operations.
func operationsOnce(t *testing.T, cs []*testenv.Coordinator, cl *clients, acked ...map[string]string) {
	t.Helper()
	for i := range cl.conns {
		seen := map[string]int{}
		byRequest := map[string]int{}
		var token string
		for {
			r, err := cl.ops(i).ListOperations(context.Background(), &pb.ListOperationsRequest{PageSize: 1000, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range r.Operations {
				seen[op.Id]++
				if op.RequestId != "" {
					byRequest[op.RequestId]++
				}
			}
			if token = r.NextPageToken; token == "" {
				break
			}
		}
		for _, a := range acked {
			for rid, id := range a {
				if seen[id] != 1 {
					t.Errorf("%s: acknowledged operation %s (request %s) present %d times", cs[i].Name, id, rid, seen[id])
				}
			}
		}
		for rid, n := range byRequest {
			if n != 1 {
				t.Errorf("%s: request id %s produced %d operations", cs[i].Name, rid, n)
			}
		}
	}
}

func waitDone(t *testing.T, cl *clients, id string) *pb.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		op, err := cl.ops(0).WaitOperation(ctx, &pb.WaitOperationRequest{Id: id})
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		if op.Done {
			return op
		}
	}
}

// TestMembershipAndReadYourWrites removes a member and adds a new one
// through followers, and reads a write back from a server other than the
// one that took it, by passing the revision the write returned.
func TestMembershipAndReadYourWrites(t *testing.T) {
	cs, cl, dir := startFakeCluster(t, 3)
	leader := leaderIndex(t, cs, cl)
	a, b := (leader+1)%3, (leader+2)%3
	ctx := context.Background()

	op, err := cl.inst(a).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "ryw", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.inst(b).GetInstance(ctx, &pb.GetInstanceRequest{Id: op.InstanceId, MinRevision: op.Revision})
	if err != nil || got.ModifyRevision < op.Revision {
		t.Fatalf("read at revision %d from another follower: %v %v", op.Revision, got, err)
	}

	// Remove follower b through follower a; the cluster goes on with two.
	removed := cs[b].Name
	r, err := cl.cluster(a).RemoveServer(ctx, &pb.RemoveServerRequest{Id: removed})
	if err != nil || len(r.Servers) != 2 {
		t.Fatalf("remove %s: %v %v", removed, r, err)
	}
	cs[b].Stop()
	if _, err := cl.inst(a).StopInstance(ctx, &pb.StopInstanceRequest{Id: op.InstanceId, GracefulTimeout: nil}); err != nil && status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("write after removal: %v", err)
	}

	// A new server joins through a follower and serves reads and writes.
	c4 := testenv.StartNode(t, dir, "c4", "--raft-fast", "--join="+cs[a].Addr)
	cl4 := dialAll(t, []*testenv.Coordinator{c4})
	waitMembers(t, cl, a, 3)
	ls, err := cl.cluster(a).ListServers(ctx, &pb.ListServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range ls.Servers {
		names[s.Id] = true
		if s.ApiAddress == "" || s.RaftAddress == "" {
			t.Errorf("server %s listed without addresses: %v", s.Id, s)
		}
	}
	if names[removed] || !names["c4"] || ls.LeaderId == "" {
		t.Fatalf("members after remove+join: %v (leader %q)", ls.Servers, ls.LeaderId)
	}
	op2, err := cl4.inst(0).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "via-c4", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}})
	if err != nil {
		t.Fatalf("write through the new member: %v", err)
	}
	if _, err := cl4.inst(0).GetInstance(ctx, &pb.GetInstanceRequest{Id: op2.InstanceId, MinRevision: op2.Revision}); err != nil {
		t.Fatalf("read-your-write on the new member: %v", err)
	}
}

// TestFollowerCatchesUpFromSnapshot stops a follower, writes far past the
// log the others keep, restarts it, and requires identical state everywhere.
func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	cs, cl, _ := startFakeCluster(t, 3, "--snapshot-threshold=64", "--trailing-logs=16")
	leader := leaderIndex(t, cs, cl)
	follower := (leader + 1) % 3
	cs[follower].Stop()
	for n := 0; n < 150; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.inst(leader).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprintf("s-%d", n), Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}})
		cancel()
		if err != nil {
			t.Fatalf("create %d: %v", n, err)
		}
	}
	// Make sure the log the follower would need is gone.
	if _, err := cl.cluster(leader).TakeSnapshot(context.Background(), &pb.TakeSnapshotRequest{}); err != nil {
		t.Fatal(err)
	}
	cs[follower].Restart()
	converged(t, cl)
	st, err := cl.cluster(follower).GetNodeStatus(context.Background(), &pb.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSnapshotIndex == 0 {
		t.Fatalf("the follower converged without a snapshot: %v", st)
	}
	r, err := cl.inst(follower).ListInstances(context.Background(), &pb.ListInstancesRequest{PageSize: 1000})
	if err != nil || len(r.Instances) != 150 {
		t.Fatalf("follower lists %d instances (%v), want 150", len(r.GetInstances()), err)
	}
}

// TestFrozenMinorityCannotAcknowledge freezes the leader (SIGSTOP, a
// minority of one): writes sent to it are not acknowledged, the majority
// elects a leader and goes on, and once thawed the old leader rejoins with
// the same state.
func TestFrozenMinorityCannotAcknowledge(t *testing.T) {
	cs, cl, _ := startFakeCluster(t, 3)
	leader := leaderIndex(t, cs, cl)
	cs[leader].Freeze()
	thawed := false
	defer func() {
		if !thawed {
			cs[leader].Send(syscall.SIGCONT)
		}
	}()
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := cl.inst(leader).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "minority", RequestId: "minority-1", Spec: spec})
	cancel()
	if err == nil {
		t.Fatal("a frozen leader acknowledged a write")
	}
	other := (leader + 1) % 3
	var ok int
	testenv.Eventually(t, 30*time.Second, "the majority to accept writes", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cl.inst(other).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprintf("majority-%d", ok), RequestId: fmt.Sprintf("majority-%d", ok), Spec: spec})
		if err == nil {
			ok++
		}
		return ok >= 5
	})
	cs[leader].Send(syscall.SIGCONT)
	thawed = true
	converged(t, cl)
	// The unacknowledged write may or may not have been applied; if it was,
	// exactly once, and a retry returns that same operation.
	ops, err := cl.ops(other).ListOperations(context.Background(), &pb.ListOperationsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, op := range ops.Operations {
		if op.RequestId == "minority-1" {
			ids = append(ids, op.Id)
		}
	}
	sort.Strings(ids)
	if len(ids) > 1 {
		t.Fatalf("request minority-1 produced %d operations", len(ids))
	}
	retry, err := cl.inst(other).CreateInstance(context.Background(), &pb.CreateInstanceRequest{Name: "minority", RequestId: "minority-1", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 1 && retry.Id != ids[0] {
		t.Fatalf("retry of an applied request made a new operation %s (had %s)", retry.Id, ids[0])
	}
}
