package watchload

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
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
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The attack of issue 17: a follower with a long history, and many
// watchers replaying it from the start at once.
const (
	revisions = 15000 // instance changes in the follower's history
	watchers  = 200
	probes    = 400 // unrelated calls timed without, and as many with, the watchers
)

// The follower's resident memory under the attack stays within
// rssFactor times what it held before plus rssSlack (docs/security.md):
// replays share the history and each revision's encoding, so what grows
// is the garbage collector's headroom (GOGC=100 lets the heap reach twice
// its live size) and what gRPC buffers per stream (64 KiB each).
const (
	rssFactor = 2
	rssSlack  = 64 << 20
)

// latencyFactor bounds the p99 of unrelated calls under the attack
// against their p99 without it. slack is added to the bound: a p99 of a
// few hundred microseconds on loopback moves by about that much on a
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
	cs := testenv.StartClusterFrom(t, coordinatorBinary(t), dir, 3, "--raft-fast=false", "--limit-rate=0", "--limit-streams=0", "--limit-in-flight=0", "--log-level=warn")
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
	idle := p99(probe(t, inst, probeID, probes, nil))
	t.Logf("follower: %d revisions, RSS %d MiB, idle p99 %v", last, before>>20, idle)

	// The attack: watchers from revision 1, reading as fast as they can,
	// from a process of their own (this test's binary again, see
	// TestMain), so that the calls timed here do not wait behind them in
	// this process.
	attacker := exec.Command(os.Args[0], "-test.run=^$")
	attacker.Env = append(os.Environ(), attackEnv+"="+cs[follower].Addr+" "+strconv.FormatInt(last, 10))
	attacker.Stderr = os.Stderr
	out, err := attacker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := attacker.StdinPipe() // closed: the attacker stops
	if err != nil {
		t.Fatal(err)
	}
	if err := attacker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); attacker.Wait() })
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(out)
		done <- string(b)
	}()
	var report string
	caughtUp := func() bool {
		select {
		case report = <-done:
			return true
		default:
			return report != ""
		}
	}

	// Memory is sampled and unrelated calls are timed while the watchers
	// replay, and until they have all caught up.
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
	var busy []time.Duration
	for !caughtUp() || len(busy) < probes {
		if time.Since(began) > 90*time.Second {
			t.Fatalf("watchers still replaying after %v", time.Since(began))
		}
		busy = append(busy, probe(t, inst, probeID, 20, nil)...)
	}
	replayed := time.Since(began)
	close(stop)
	sampling.Wait()
	if !strings.HasPrefix(report, "caught up") {
		t.Fatalf("attacker: %q", report)
	}

	loaded := p99(busy)
	t.Logf("%d watchers replayed %d revisions in %v; RSS peak %d MiB (before %d MiB); p99 %v under the attack (%d calls), %v idle",
		watchers, last, replayed.Round(time.Millisecond), peak>>20, before>>20, loaded, len(busy), idle)
	if peak > rssFactor*before+rssSlack {
		t.Errorf("follower RSS peaked at %d MiB, over %d× its %d MiB before the watchers (+%d MiB)", peak>>20, rssFactor, before>>20, rssSlack>>20)
	}
	if bound := latencyFactor*idle + slack; loaded > bound {
		t.Errorf("p99 of unrelated calls %v under the attack, over %d× the idle %v (+%v)", loaded, latencyFactor, idle, slack)
	}
}

// coordinatorBinary builds flotilla-coordinator as it ships (no race
// detector, whose shadow memory and slowness would be measured instead)
// and returns the directory holding it.
func coordinatorBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/flotilla-coordinator")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// attackEnv, set to "ADDR REVISION", makes the test binary the attacker:
// it opens the watchers against ADDR from revision 1, prints "caught up"
// and exits once each has reached REVISION, or prints why not.
const attackEnv = "WATCHLOAD_ATTACK"

// attack is the attacker process's main.
func attack(spec string) int {
	addr, revText, _ := strings.Cut(spec, " ")
	last, err := strconv.ParseInt(revText, 10, 64)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }() // the test ended
	var conns []*grpc.ClientConn
	for range 4 {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	errs := make(chan error, watchers)
	var wg sync.WaitGroup
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- replay(ctx, conns[i%len(conns)], last)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("caught up")
	return 0
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

// probe times n GetInstance calls, one after the other.
func probe(t *testing.T, c pb.InstanceServiceClient, id string, n int, out []time.Duration) []time.Duration {
	t.Helper()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		began := time.Now()
		_, err := c.GetInstance(ctx, &pb.GetInstanceRequest{Id: id})
		out = append(out, time.Since(began))
		cancel()
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
	}
	return out
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// replay watches from revision 1 until it has seen revision last,
// reading of each message only its revision.
func replay(ctx context.Context, cc *grpc.ClientConn, last int64) error {
	desc := &grpc.StreamDesc{StreamName: "WatchInstances", ServerStreams: true}
	s, err := cc.NewStream(ctx, desc, pb.InstanceService_WatchInstances_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&pb.WatchInstancesRequest{StartRevision: 1}); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		var m raw
		if err := s.RecvMsg(&m); err != nil {
			return err
		}
		if m.revision >= last {
			return nil
		}
	}
}

// raw is a received message of which only the revision is read.
type raw struct{ revision int64 }

// rawCodec encodes requests as protobuf and reads from each response
// only WatchInstancesResponse.revision (field 1).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (rawCodec) Unmarshal(b []byte, v any) error {
	m := v.(*raw)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			r, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m.revision = int64(r)
			return nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
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
