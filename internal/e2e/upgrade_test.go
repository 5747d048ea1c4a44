package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// writeLog records acknowledged writes: which request got which
// operation, and when, for the longest gap between two acknowledgements.
type writeLog struct {
	mu    sync.Mutex
	acked map[string]string // request id -> operation id
	times []time.Time
}

func (w *writeLog) ack(rid, op string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked[rid] = op
	w.times = append(w.times, time.Now())
}

func (w *writeLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// longestGap is the longest time without an acknowledged write.
func (w *writeLog) longestGap() (time.Duration, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := slices.Clone(w.times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	var at time.Time
	for k := 1; k < len(ts); k++ {
		if d := ts[k].Sub(ts[k-1]); d > gap {
			gap, at = d, ts[k-1]
		}
	}
	return gap, at
}

// waitAny waits for an operation to finish, asking any server that answers
// (one may be being replaced); nil if ctx ends first.
func waitAny(ctx context.Context, cl *clients, id string) *pb.Operation {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		op, err := cl.ops(rand.IntN(len(cl.conns))).WaitOperation(cctx, &pb.WaitOperationRequest{Id: id})
		cancel()
		if err == nil && op.Done {
			return op
		}
		if err != nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// TestRollingUpgrade starts three coordinators and two agents of the
// previous release (PreviousRelease, built from this repository's
// history), puts them under continuous writes and a running workload
// (instances stopped and started on the hosts), and replaces them one at a
// time with this tree's binaries: the followers, then the leader, then the
// agents. No acknowledged write may be lost, no request may make two
// operations, every operation must finish, the API must keep taking writes
// (the longest gap between two acknowledged writes is reported and
// bounded), the log version must stay 1 while any server is old, and rise
// to 2 once all are new.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: not run with -short")
	}
	// The running workload is real guests: their domains outlive the
	// agent's replacement, as a user's do.
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	old := testenv.PreviousReleaseBinaries(t)
	dir := t.TempDir()
	cs := testenv.StartClusterFrom(t, old, dir, 3)
	cl := dialAll(t, cs)
	waitMembers(t, cl, 0, 3)
	all := cs[0].Addr + "," + cs[1].Addr + "," + cs[2].Addr
	// Two fake hosts take the stream of creates; the libvirt host the
	// instances stopped and started.
	const realHost = "e2e-upgrade"
	agents := []*testenv.Agent{
		testenv.StartAgentFrom(t, old, dir, all, realHost, "libvirt", "--label=workload=lifecycle"),
		testenv.StartAgentFrom(t, old, dir, all, "fake-1", "fake", "--vcpus=100000", "--memory-mib=100000000"),
		testenv.StartAgentFrom(t, old, dir, all, "fake-2", "fake", "--vcpus=100000", "--memory-mib=100000000"),
	}
	g := testenv.NewGrpcurl(t, cs[0].Addr)
	epochs := make([]int, len(agents))
	for k, a := range agents {
		epochs[k] = testenv.WaitHost(t, g, a.HostID, 0)
	}

	// logVersions is each reachable server's log version and the newest it
	// supports (servers of the previous release say neither: 0 is 1).
	logVersions := func() (versions, maxes []uint32) {
		for i := range cs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cl.cluster(i).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{})
			cancel()
			if err == nil {
				versions, maxes = append(versions, max(st.LogVersion, 1)), append(maxes, max(st.LogVersionMax, 1))
			}
		}
		return versions, maxes
	}

	w := &writeLog{acked: map[string]string{}}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	// Paced (about 40 creates a second in all): the state stays small
	// enough to hash quickly at the end, and a pause of the API shows.
	for wk := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				if n > 0 {
					time.Sleep(100 * time.Millisecond)
				}
				rid := fmt.Sprintf("c%d-%d", wk, n)
				req := &pb.CreateInstanceRequest{Name: rid, RequestId: rid, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
					Placement: &pb.Placement{HypervisorKind: "fake"}}
				if op, ok := retried(t, ctx, cl, rid, func(ctx context.Context, i int) (*pb.Operation, error) { return cl.inst(i).CreateInstance(ctx, req) }); ok {
					w.ack(rid, op.Id)
				}
			}
		}()
	}
	// The running workload: an instance stopped and started again on the
	// real host, each action waited for, across every replacement. Its
	// host's agent is replaced between two actions (hostIdle), as the
	// upgrade procedure says: a step the agent is running when it stops
	// fails (AGENT_RESTARTED) rather than being finished by the next one.
	lifecycle := &writeLog{acked: map[string]string{}}
	var hostIdle sync.RWMutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		var id string
		for n := 0; ctx.Err() == nil; n++ {
			rid := fmt.Sprintf("l-%d", n)
			hostIdle.RLock()
			op, ok := retried(t, ctx, cl, rid, func(ctx context.Context, i int) (*pb.Operation, error) {
				switch {
				case n == 0:
					return cl.inst(i).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "lifecycle", RequestId: rid, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 192, Image: "flotilla-test"},
						Placement: &pb.Placement{HostLabels: map[string]string{"workload": "lifecycle"}}})
				case n%2 == 1:
					return cl.inst(i).StopInstance(ctx, &pb.StopInstanceRequest{Id: id, RequestId: rid})
				default:
					return cl.inst(i).StartInstance(ctx, &pb.StartInstanceRequest{Id: id, RequestId: rid})
				}
			})
			var done *pb.Operation
			if ok {
				lifecycle.ack(rid, op.Id)
				done = waitAny(ctx, cl, op.Id)
			}
			hostIdle.RUnlock()
			if done == nil {
				return // stopped
			}
			if n == 0 {
				id = op.InstanceId
				t.Cleanup(func() {
					_, _ = virsh(t, "destroy", "flotilla-"+id)
					_, _ = virsh(t, "undefine", "--managed-save", "flotilla-"+id)
				})
			}
			if done.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Errorf("%s %s ended %s: %v", done.Kind, done.Id, done.State, done.Error)
				return
			}
		}
	}()
	more := func(what string, log *writeLog, n int) {
		t.Helper()
		want := log.count() + n
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%d more %s", n, what), func() bool { return log.count() >= want })
	}
	more("creates", w, 30)
	more("lifecycle actions", lifecycle, 2)

	leader := leaderIndex(t, cs, cl)
	order := []int{(leader + 1) % 3, (leader + 2) % 3, leader}
	for k, i := range order {
		t.Logf("replacing %s (%s)", cs[i].Name, map[bool]string{true: "the leader", false: "a follower"}[i == leader])
		cs[i].Replace("")
		testenv.Eventually(t, 60*time.Second, cs[i].Name+" to serve as a member", func() bool {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := cl.cluster(i).GetNodeStatus(c, &pb.GetNodeStatusRequest{})
			return err == nil && st.LeaderId != "" && st.LogVersionMax >= 2
		})
		more("creates", w, 30)
		more("lifecycle actions", lifecycle, 1)
		if k < len(order)-1 {
			// Old servers remain: nobody may be past version 1.
			if v, m := logVersions(); slices.Max(v) != 1 {
				t.Fatalf("log versions %v (supported %v) with a server of the previous release in the cluster", v, m)
			}
		}
	}
	testenv.Eventually(t, 30*time.Second, "every server at the newest log version", func() bool {
		v, _ := logVersions()
		return len(v) == 3 && slices.Min(v) == fsm.SupportedLogVersion
	})
	more("creates", w, 30)
	hosts := pb.NewHostServiceClient(cl.conns[0])
	for k, a := range agents {
		t.Logf("replacing agent %s", a.HostID)
		fake := a.HostID != realHost
		if fake {
			// The fake hypervisor keeps its domains in the agent's memory:
			// its host is cordoned, and what runs there finished, before
			// its agent goes; creates meanwhile go to the other one.
			if _, err := hosts.CordonHost(ctx, &pb.CordonHostRequest{Id: a.HostID}); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			ops := slices.Collect(maps.Values(w.acked))
			w.mu.Unlock()
			for _, id := range ops {
				waitAny(ctx, cl, id)
			}
		}
		if !fake {
			hostIdle.Lock()
		}
		a.Replace("")
		if fake {
			// Cordoned, so never READY: its new session is what shows.
			testenv.Eventually(t, 60*time.Second, a.HostID+"'s new session", func() bool {
				h, err := hosts.GetHost(ctx, &pb.GetHostRequest{Id: a.HostID})
				return err == nil && h.Status == pb.HostStatus_HOST_STATUS_CORDONED && int(h.Epoch) > epochs[k]
			})
		} else {
			epochs[k] = testenv.WaitHost(t, g, a.HostID, epochs[k])
			hostIdle.Unlock()
		}
		if fake {
			if _, err := hosts.UncordonHost(ctx, &pb.UncordonHostRequest{Id: a.HostID}); err != nil {
				t.Fatal(err)
			}
			more("creates", w, 20)
		} else {
			more("lifecycle actions", lifecycle, 2)
		}
	}
	more("creates", w, 30)
	stop()
	wg.Wait()
	if t.Failed() {
		return
	}

	converged(t, cl)
	for _, log := range []*writeLog{w, lifecycle} {
		for rid, id := range log.acked {
			if op := waitDone(t, cl, id); op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Errorf("operation %s (request %s) ended %s: %v", id, rid, op.State, op.Error)
			}
		}
	}
	converged(t, cl)
	operationsOnce(t, cs, cl, w.acked, lifecycle.acked)
	gap, at := w.longestGap()
	t.Logf("rolling upgrade from %s: %d creates and %d lifecycle actions acknowledged; longest time without an acknowledged create: %v (after %s)",
		testenv.PreviousRelease, w.count(), lifecycle.count(), gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	// A replaced server's clients move to the others at once, and a
	// replaced leader is followed by an election of about a second (fast
	// Raft timeouts).
	if gap > 10*time.Second {
		t.Errorf("writes stopped for %v during the upgrade", gap)
	}
	for _, c := range cs {
		if n := c.LogCount("panic"); n > 0 {
			t.Errorf("%s logged %d panics", c.Name, n)
		}
	}
}
