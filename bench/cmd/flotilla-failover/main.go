// Command flotilla-failover measures leader failover of a three-coordinator
// cluster on loopback: it SIGKILLs the leader again and again and times how
// long until a write (CreateInstance) is acknowledged again, through the
// surviving servers. It prints p50/p99 over all kills.
//
//	go run ./bench/cmd/flotilla-failover [-kills 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-vm/flotilla/bench/procs"
	"github.com/flotilla-vm/flotilla/bench/stats"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func main() {
	kills := flag.Int("kills", 20, "how many times to kill the leader")
	keep := flag.Bool("keep-logs", false, "keep the work directory")
	flag.Parse()
	if err := run(*kills, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-failover:", err)
		os.Exit(1)
	}
}

type node struct {
	c    *procs.Coordinator
	conn *grpc.ClientConn
}

func run(kills int, keep bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	wd, _ := os.Getwd()
	root, err := procs.RepoRoot(wd)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "flotilla-failover-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Println("work dir:", work)
	}
	bin := work + "/bin"
	if err := procs.Build(root, bin); err != nil {
		return err
	}

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.c.Stop(5 * time.Second)
			n.conn.Close()
		}
	}()
	for i := 1; i <= 3; i++ {
		join := ""
		if i > 1 {
			join = nodes[0].c.Addr
		}
		c, err := procs.StartClusterNode(bin, work, fmt.Sprintf("c%d", i), join)
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		nodes = append(nodes, &node{c: c, conn: conn})
	}
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.c.Addr
	}
	agent, err := procs.StartAgent(bin, work, work+"/run", work+"/images", strings.Join(addrs, ","), "fake-1", "fake", "--vcpus=1000000", "--memory-mib=1000000000")
	if err != nil {
		return err
	}
	defer agent.Stop(5 * time.Second)
	if err := waitWrite(ctx, nodes, -1, 60*time.Second); err != nil {
		return fmt.Errorf("cluster never took a write: %w", err)
	}

	var samples []time.Duration
	for k := 0; k < kills && ctx.Err() == nil; k++ {
		if err := waitConverged(ctx, nodes, 60*time.Second); err != nil {
			return err
		}
		leader, err := findLeader(ctx, nodes)
		if err != nil {
			return err
		}
		start := time.Now()
		nodes[leader].c.Kill()
		if err := waitWrite(ctx, nodes, leader, 60*time.Second); err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		took := time.Since(start)
		samples = append(samples, took)
		fmt.Printf("kill %2d: leader %s down, writes accepted again after %s\n", k+1, nodes[leader].c.Name, took.Round(time.Millisecond))
		p, err := nodes[leader].c.Restart()
		if err != nil {
			return err
		}
		nodes[leader].c.Proc = p
	}
	s := stats.Summarize(samples)
	fmt.Printf("\nflotilla-failover  (3 coordinators on loopback, --raft-fast, 2 cores, %s)\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("%-44s %5s %9s %9s %9s %9s\n", "metric", "n", "p50", "p99", "max", "mean")
	fmt.Printf("%-44s %5d %9.1f %9.1f %9.1f %9.1f\n", "leader SIGKILL -> write acknowledged (ms)", s.N, stats.Ms(s.P50), stats.Ms(s.P99), stats.Ms(s.Max), stats.Ms(s.Mean))
	return nil
}

// waitWrite retries a create through the servers other than skip until one
// is acknowledged.
func waitWrite(ctx context.Context, nodes []*node, skip int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; time.Now().Before(deadline); i++ {
		n := i % len(nodes)
		if n == skip {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_, err := pb.NewInstanceServiceClient(nodes[n].conn).CreateInstance(cctx, &pb.CreateInstanceRequest{
			Name: "f", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
		})
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no write acknowledged in %s", limit)
}

func findLeader(ctx context.Context, nodes []*node) (int, error) {
	for tries := 0; tries < 200; tries++ {
		for i, n := range nodes {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := pb.NewClusterServiceClient(n.conn).GetNodeStatus(cctx, &pb.GetNodeStatusRequest{})
			cancel()
			if err == nil && st.RaftState == "Leader" {
				return i, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no leader")
}

// waitConverged waits until all three servers report the same revision, so
// each kill starts from a healthy, caught-up cluster.
// allVoters reports whether every node is a voter: a joining server is a
// non-voter until it has caught up, and killing the leader before would
// leave no quorum.
func allVoters(ctx context.Context, nodes []*node) bool {
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	ls, err := pb.NewClusterServiceClient(nodes[0].conn).ListServers(cctx, &pb.ListServersRequest{})
	if err != nil {
		return false
	}
	voters := 0
	for _, s := range ls.Servers {
		if s.Suffrage == "voter" {
			voters++
		}
	}
	return voters == len(nodes)
}

func waitConverged(ctx context.Context, nodes []*node, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		revs := map[int64]bool{}
		ok := true
		for _, n := range nodes {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := pb.NewClusterServiceClient(n.conn).GetNodeStatus(cctx, &pb.GetNodeStatusRequest{})
			cancel()
			if err != nil || st.LeaderId == "" {
				ok = false
				break
			}
			revs[st.Revision] = true
		}
		if ok && len(revs) == 1 && allVoters(ctx, nodes) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster did not converge in %s", limit)
}
