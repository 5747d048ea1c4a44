package watchload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The attack of issue 17: a follower with a long history, and many
// watchers replaying it from the start at once.
const (
	revisions = 15000 // instance changes in the follower's history
	nWatchers = 200
)

// The follower's resident memory under the attack grows by at most
// rssGrowth (docs/security.md): replays share the history and each
// revision's encoding, so what grows does not depend on the history's
// length times the watchers (a copy per watcher grew it by 650 MiB here):
// what gRPC buffers per stream (64 KiB each, 12.5 MiB for 200), the pages
// in flight, and the garbage collector's headroom over the garbage of 200
// replays at once (measured 150-185 MiB).
const rssGrowth = 256 << 20

// latencyFactor bounds the p99 of unrelated calls under the attack
// against their p99 without it. slack is added to the bound: a p99 of a
// few hundred microseconds on loopback moves by milliseconds on a
// shared machine from one run to the next, attack or not.
const (
	latencyFactor = 2
	slack         = 5 * time.Millisecond
)

func TestWatchersReplayingHistory(t *testing.T) {
	dir := t.TempDir()
	// No per-caller limits: the attack is the worst case of the fan-out
	// itself (one IP address on loopback would otherwise be one caller
	// held to --limit-streams).
	bin := buildBinaries(t)
	cs := testenv.StartClusterFrom(t, bin, dir, 3, "--raft-fast=false", "--limit-rate=0", "--limit-streams=0", "--limit-in-flight=0", "--log-level=warn")
	leader, follower := roles(t, cs)
	t.Logf("leader %s, follower %s", cs[leader].Name, cs[follower].Name)

	last := fill(t, cs[leader].Addr, revisions)
	fc := dial(t, cs[follower].Addr)
	inst := pb.NewInstanceServiceClient(fc)
	// The follower has applied the whole history.
	{
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		l, err := inst.ListInstances(ctx, &pb.ListInstancesRequest{MinRevision: last, PageSize: 1})
		cancel()
		if err != nil {
			t.Fatalf("follower at revision %d: %v", last, err)
		}
		if len(l.Instances) == 0 {
			t.Fatal("the follower lists no instance")
		}
	}
	probeID := firstInstance(t, inst)

	before := rss(t, cs[follower].Pid())
	t.Logf("follower: %d revisions, RSS %d MiB", last, before>>20)

	// The calls timed, and the attack (watchers from revision 1, reading
	// as fast as they can), each from a process of its own (./attacker).
	prober := start(t, bin, "probe", cs[follower].Addr, probeID)
	idle, _ := prober.p99(t)
	watchers := start(t, bin, "watch", cs[follower].Addr, strconv.FormatInt(last, 10), strconv.Itoa(nWatchers))
	prober.send(t, "reset")

	// Memory is sampled while the watchers replay, until they have all
	// caught up (the attacker times the calls meanwhile).
	peak := before
	var sampling sync.WaitGroup
	stop := make(chan struct{})
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if r := rssOf(cs[follower].Pid()); r > peak {
					peak = r
				}
			}
		}
	}()
	began := time.Now()
	if line := watchers.line(t, 90*time.Second); line != "caught up" {
		t.Fatalf("watchers: %s", line)
	}
	replayed := time.Since(began)
	loaded, calls := prober.p99(t)
	close(stop)
	sampling.Wait()
	t.Logf("%d watchers replayed %d revisions in %v; RSS peak %d MiB (before %d MiB); GetInstance p99 %v under the attack (%d calls), %v idle",
		nWatchers, last, replayed.Round(time.Millisecond), peak>>20, before>>20, loaded, calls, idle)
	if peak > before+rssGrowth {
		t.Errorf("follower RSS peaked at %d MiB, %d MiB over its %d MiB before the watchers (at most %d MiB)", peak>>20, (peak-before)>>20, before>>20, rssGrowth>>20)
	}
	if bound := latencyFactor*idle + slack; loaded > bound {
		t.Errorf("p99 of unrelated calls %v under the attack, over %d× the idle %v (+%v)", loaded, latencyFactor, idle, slack)
	}
}

// helper is a running ./attacker: its standard input, and its output
// line by line.
type helper struct {
	in    io.WriteCloser
	lines chan string
}

// start runs ./attacker with args; it stops when the test ends.
func start(t *testing.T, bin string, args ...string) *helper {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "attacker"), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return h
}

func (h *helper) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// line waits for the helper's next line.
func (h *helper) line(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatal("the attacker ended")
		}
		return l
	case <-time.After(within):
		t.Fatalf("no word from the attacker in %v", within)
	}
	return ""
}

// p99 asks the prober for the p99 of the calls it timed since the last
// mark or reset.
func (h *helper) p99(t *testing.T) (time.Duration, int) {
	t.Helper()
	h.send(t, "mark")
	line := h.line(t, time.Minute)
	var p99 time.Duration
	var calls int
	if _, err := fmt.Sscanf(line, "p99=%d calls=%d", &p99, &calls); err != nil {
		t.Fatalf("prober: %q: %v", line, err)
	}
	return p99, calls
}

// buildBinaries builds flotilla-coordinator as it ships and the attacker,
// both without the race detector (whose shadow memory and slowness would
// be measured instead), and returns the directory holding them.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/flotilla-coordinator", "./internal/watchload/attacker")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// roles waits for a leader and returns its index and a follower's.
func roles(t *testing.T, cs []*testenv.Coordinator) (leader, follower int) {
	t.Helper()
	clients := make([]pb.ClusterServiceClient, len(cs))
	for i, c := range cs {
		clients[i] = pb.NewClusterServiceClient(dial(t, c.Addr))
	}
	leader = -1
	testenv.Eventually(t, time.Minute, "a leader", func() bool {
		for i, c := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.GetNodeStatus(ctx, &pb.GetNodeStatusRequest{})
			cancel()
			if err == nil && st.RaftState == "Leader" {
				leader = i
				return true
			}
		}
		return false
	})
	return leader, (leader + 1) % len(cs)
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// fill creates n instances through the leader (no host: they wait to be
// placed), each create one revision of the instance history, and returns
// the revision of the last.
func fill(t *testing.T, addr string, n int) int64 {
	t.Helper()
	const workers = 32
	var conns []pb.InstanceServiceClient
	for range 4 {
		conns = append(conns, pb.NewInstanceServiceClient(dial(t, addr)))
	}
	var next, last atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[w%len(conns)]
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				name := fmt.Sprintf("w-%d", k)
				var op *pb.Operation
				var err error
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					op, err = c.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: name, RequestId: name,
						Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}})
					cancel()
					// An election: the retry, with the same request id, finds
					// the first create if it was recorded.
					if status.Code(err) != codes.Unavailable || try == 50 {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				for {
					cur := last.Load()
					if op.GetRevision() <= cur || last.CompareAndSwap(cur, op.GetRevision()) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return last.Load()
}

func firstInstance(t *testing.T, c pb.InstanceServiceClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1})
	if err != nil || len(l.Instances) == 0 {
		t.Fatalf("list: %v", err)
	}
	return l.Instances[0].Id
}

// rss is a process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	r := rssOf(pid)
	if r == 0 {
		t.Fatalf("no RSS for process %d", pid)
	}
	return r
}

// rssOf reads VmRSS from /proc/pid/status; 0 if it cannot.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
