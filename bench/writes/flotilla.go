package writes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-vm/flotilla/bench/procs"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// FlotillaMembers is the size of the coordinator cluster under test.
const FlotillaMembers = 3

// FlotillaConnections is the size of the client connection pool, as for etcd.
const FlotillaConnections = EtcdConnections

// FlotillaOptions configures a FlotillaTarget.
type FlotillaOptions struct {
	// BinDir holds flotilla-coordinator and flotilla-agent (procs.Build).
	BinDir string
	// Agent connects one fake-hypervisor agent with practically unbounded
	// capacity, so every create is placed and run: the orchestrator sends
	// the step, the agent journals it and reports the result and the power
	// change, each of them one more Raft entry. Without it every create is
	// committed as waiting for capacity.
	Agent bool
	// LogLevel of the coordinators and the agent ("warn" if empty; "info"
	// logs a line per dispatched step on the leader).
	LogLevel string
	// Extra flags for every coordinator.
	Extra []string
	// LeaderOnly connects the whole pool to the member leading once the
	// cluster is up, instead of spreading it over the members: no write is
	// forwarded, so the difference from the spread pool is what forwarding
	// costs. A diagnostic, not how clients are told to connect.
	LeaderOnly bool
}

// FlotillaTarget is the Flotilla side of the benchmark: three
// flotilla-coordinator processes on 127.0.0.1 (c1 bootstraps, c2 and c3 join
// it; Raft log in raft-boltdb, fsynced on every append), and optionally one
// fake agent connected to all of them. Each op is one CreateInstance RPC
// (unique name and request_id; spec 1 vCPU, 64 MiB, image flotilla-test)
// over a pool of FlotillaConnections gRPC connections used round-robin and
// spread over the members; followers forward writes to the leader.
type FlotillaTarget struct {
	name      string
	root      string
	nodes     []*procs.Coordinator
	agent     *procs.Agent
	conns     []*grpc.ClientConn
	clients   []pb.InstanceServiceClient
	next      atomic.Uint64
	closeOnce sync.Once
}

var _ Target = (*FlotillaTarget)(nil)

// BuildFlotilla builds the binaries (go build, no -race) of the module
// holding the working directory into a new temporary directory under dir
// (os.TempDir() if ""), which the caller removes.
func BuildFlotilla(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := procs.RepoRoot(wd)
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = os.TempDir()
	}
	bin, err := os.MkdirTemp(dir, "flotilla-bench-bin-")
	if err != nil {
		return "", err
	}
	if err := procs.Build(root, bin); err != nil {
		os.RemoveAll(bin)
		return "", err
	}
	return bin, nil
}

// NewFlotillaTarget starts the cluster (and the agent) with data under a new
// temporary directory in dir, and returns once every member is a voter,
// a create through each member has committed, and, with an agent, a create
// has been placed and has finished on it. The caller must call Close.
func NewFlotillaTarget(ctx context.Context, dir string, opt FlotillaOptions) (_ *FlotillaTarget, err error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if opt.LogLevel == "" {
		opt.LogLevel = "warn"
	}
	root, err := os.MkdirTemp(dir, "flotilla-bench-flotilla-")
	if err != nil {
		return nil, err
	}
	t := &FlotillaTarget{name: "flotilla", root: root}
	if opt.Agent {
		t.name = "flotilla+agent"
	}
	if opt.LeaderOnly {
		t.name += "@leader"
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	for i := 1; i <= FlotillaMembers; i++ {
		join := ""
		if i > 1 {
			join = t.nodes[0].Addr
		}
		// procs starts cluster nodes with --raft-fast (200 ms election
		// timeouts, for tests); a loaded leader then loses its lease and
		// writes fail with "not the leader". Measure with the production
		// timeouts (hashicorp/raft defaults: 1 s), as etcd runs with its own.
		extra := append([]string{"--raft-fast=false", "--log-level=" + opt.LogLevel}, opt.Extra...)
		c, err := procs.StartClusterNode(opt.BinDir, root, fmt.Sprintf("c%d", i), join, extra...)
		if err != nil {
			return nil, err
		}
		t.nodes = append(t.nodes, c)
	}
	for i := 0; i < FlotillaConnections; i++ {
		if err := t.addClient(t.nodes[i%len(t.nodes)].Addr); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := t.waitCluster(ctx); err != nil {
		return nil, err
	}
	if opt.LeaderOnly {
		if err := t.poolToLeader(ctx); err != nil {
			return nil, err
		}
	}
	if opt.Agent {
		addrs := make([]string, len(t.nodes))
		for i, n := range t.nodes {
			addrs[i] = n.Addr
		}
		t.agent, err = procs.StartAgent(opt.BinDir, root, filepath.Join(root, "run"), filepath.Join(root, "images"),
			strings.Join(addrs, ","), "fake-1", "fake",
			"--vcpus=100000000", "--memory-mib=100000000000", "--log-level="+opt.LogLevel)
		if err != nil {
			return nil, err
		}
		if err := t.waitAgent(ctx); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// poolToLeader replaces the clients with as many connections to the
// leader. The connections spread over the members stay for status calls.
func (t *FlotillaTarget) poolToLeader(ctx context.Context) error {
	i, err := t.Leader(ctx)
	if err != nil {
		return err
	}
	t.clients = t.clients[:0]
	for range FlotillaConnections {
		if err := t.addClient(t.nodes[i].Addr); err != nil {
			return err
		}
	}
	return nil
}

// addClient connects one more client of the pool to addr.
func (t *FlotillaTarget) addClient(addr string) error {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	c.Connect()
	t.conns = append(t.conns, c)
	t.clients = append(t.clients, pb.NewInstanceServiceClient(c))
	return nil
}

// Name is "flotilla" or "flotilla+agent" (with the agent), with "@leader"
// appended when the pool connects to the leader only.
func (t *FlotillaTarget) Name() string { return t.name }

// Dir is the temporary directory holding the members' data dirs and logs.
func (t *FlotillaTarget) Dir() string { return t.root }

// Addrs are the members' API addresses.
func (t *FlotillaTarget) Addrs() []string {
	out := make([]string, len(t.nodes))
	for i, n := range t.nodes {
		out[i] = n.Addr
	}
	return out
}

// Pids are the process ids of the members (c1, c2, c3; 0 if not found),
// looked up in /proc by their data dirs (procs does not expose them).
func (t *FlotillaTarget) Pids() []int {
	out := make([]int, len(t.nodes))
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, n := range t.nodes {
			if slices.Contains(args, "--data-dir="+n.DataDir) {
				out[i] = pid
			}
		}
	}
	return out
}

// Leader returns the index (0..2) of the member that leads now.
func (t *FlotillaTarget) Leader(ctx context.Context) (int, error) {
	i, _, err := t.leaderStatus(ctx)
	return i, err
}

// leaderStatus returns the index and the status of the member that leads now.
func (t *FlotillaTarget) leaderStatus(ctx context.Context) (int, *pb.NodeStatus, error) {
	for i := range t.nodes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := pb.NewClusterServiceClient(t.conns[i]).GetNodeStatus(cctx, &pb.GetNodeStatusRequest{})
		cancel()
		if err == nil && st.RaftState == "Leader" {
			return i, st, nil
		}
	}
	return -1, nil, errors.New("no member says it leads")
}

// LeaderPid is the leader's process id, or 0 if unknown.
func (t *FlotillaTarget) LeaderPid(ctx context.Context) int {
	i, err := t.Leader(ctx)
	if err != nil {
		return 0
	}
	return t.Pids()[i]
}

// CommitIndex is the leader's Raft commit index: the bench reports how many
// log entries a row took, so batching shows as writes per entry.
func (t *FlotillaTarget) CommitIndex(ctx context.Context) (uint64, error) {
	_, st, err := t.leaderStatus(ctx)
	if err != nil {
		return 0, err
	}
	return st.CommitIndex, nil
}

// Op creates one instance: name and request_id from (client, seq).
func (t *FlotillaTarget) Op(ctx context.Context, client, seq int) error {
	c := t.clients[(t.next.Add(1)-1)%uint64(len(t.clients))]
	id := fmt.Sprintf("w-%d-%d", client, seq)
	op, err := c.CreateInstance(ctx, &pb.CreateInstanceRequest{
		Name:      id,
		Spec:      &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
		RequestId: id,
	})
	if err != nil {
		return err
	}
	if op.GetInstanceId() == "" {
		return fmt.Errorf("create %s: operation %q has no instance", id, op.GetId())
	}
	return nil
}

// Close kills the processes and removes their data. Safe to call more than once.
func (t *FlotillaTarget) Close() {
	t.closeOnce.Do(func() {
		for _, c := range t.conns {
			_ = c.Close()
		}
		if t.agent != nil {
			t.agent.Kill()
		}
		for _, n := range t.nodes {
			n.Kill()
		}
		if t.root != "" {
			_ = os.RemoveAll(t.root)
		}
	})
}

// exited returns an error naming a process that ended on its own.
func (t *FlotillaTarget) exited() error {
	var procs []*procs.Proc
	for _, n := range t.nodes {
		procs = append(procs, n.Proc)
	}
	if t.agent != nil {
		procs = append(procs, t.agent.Proc)
	}
	for _, p := range procs {
		if why := p.Unexpected(); why != "" {
			return fmt.Errorf("%s exited: %s%s", p.Name, why, logTail(p.Log))
		}
	}
	return nil
}

func logTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return fmt.Sprintf("\n--- %s (tail) ---\n%s", filepath.Base(path), data)
}

// waitCluster waits until the Raft configuration has all members as voters,
// every member knows the leader, and a create through each member commits.
func (t *FlotillaTarget) waitCluster(ctx context.Context) error {
	var last error
	for {
		if err := t.exited(); err != nil {
			return err
		}
		if last = t.probeCluster(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flotilla cluster not ready: %v (last: %v)%s", ctx.Err(), last, logTail(t.nodes[0].Log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *FlotillaTarget) probeCluster(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ls, err := pb.NewClusterServiceClient(t.conns[0]).ListServers(cctx, &pb.ListServersRequest{})
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range ls.Servers {
		if s.Suffrage == "voter" && s.ApiAddress != "" {
			voters++
		}
	}
	if voters != FlotillaMembers {
		return fmt.Errorf("%d of %d members are voters", voters, FlotillaMembers)
	}
	for i, n := range t.nodes {
		st, err := pb.NewClusterServiceClient(t.conns[i]).GetNodeStatus(cctx, &pb.GetNodeStatusRequest{})
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		if st.LeaderApiAddress == "" {
			return fmt.Errorf("%s knows no leader", n.Name)
		}
		if _, err := t.clients[i].CreateInstance(cctx, &pb.CreateInstanceRequest{
			Name: "probe-" + n.Name, Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
			RequestId: "probe-" + n.Name,
		}); err != nil {
			return fmt.Errorf("create through %s: %w", n.Name, err)
		}
	}
	return nil
}

// waitAgent waits until the agent's host is READY and a create placed on it
// has succeeded.
func (t *FlotillaTarget) waitAgent(ctx context.Context) error {
	hosts := pb.NewHostServiceClient(t.conns[0])
	ops := pb.NewOperationServiceClient(t.conns[0])
	var opID string
	var last error
	for {
		if err := t.exited(); err != nil {
			return err
		}
		last = func() error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if opID == "" {
				hl, err := hosts.ListHosts(cctx, &pb.ListHostsRequest{})
				if err != nil {
					return err
				}
				if len(hl.Hosts) != 1 || hl.Hosts[0].Status != pb.HostStatus_HOST_STATUS_READY {
					return fmt.Errorf("agent's host not ready: %v", hl.Hosts)
				}
				op, err := t.clients[0].CreateInstance(cctx, &pb.CreateInstanceRequest{
					Name: "probe-agent", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
					RequestId: "probe-agent",
				})
				if err != nil {
					return err
				}
				opID = op.Id
			}
			op, err := ops.GetOperation(cctx, &pb.GetOperationRequest{Id: opID})
			if err != nil {
				return err
			}
			switch {
			case op.State == pb.OperationState_OPERATION_STATE_SUCCEEDED:
				return nil
			case op.Done:
				return fmt.Errorf("probe create ended %v: %v", op.State, op.Error)
			}
			return fmt.Errorf("probe create is %v (%s)", op.State, op.Step)
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			tail := ""
			if t.agent != nil {
				tail = logTail(t.agent.Log)
			}
			return fmt.Errorf("flotilla agent not ready: %v (last: %v)%s", ctx.Err(), last, tail)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
