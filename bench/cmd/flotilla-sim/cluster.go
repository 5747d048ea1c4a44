package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	agentnode "github.com/flotilla-vm/flotilla/agent/node"
	"github.com/flotilla-vm/flotilla/coordinator/node"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// shape is a host's size, picked by weight.
type shape struct {
	vcpus     uint32
	memoryGiB uint64
	diskGiB   uint64
	weight    int
}

var hostShapes = []shape{
	{32, 128, 2000, 30},
	{64, 256, 4000, 40},
	{96, 384, 6000, 20},
	{96, 512, 8000, 10},
}

var zones = []string{"a", "b", "c"}

// hostSpec is what one simulated host offers.
type hostSpec struct {
	id       string
	capacity hypervisor.Capacity
	labels   map[string]string
}

// hostSpecs is deterministic for a seed: shapes by weight; nine hosts in ten
// carry zone=a/b/c (round robin), every tenth none.
func hostSpecs(n int, seed uint64) []hostSpec {
	rng := rand.New(rand.NewPCG(seed, 0x5117))
	total := 0
	for _, s := range hostShapes {
		total += s.weight
	}
	out := make([]hostSpec, n)
	for i := range out {
		k := rng.IntN(total)
		var sh shape
		for _, s := range hostShapes {
			if k < s.weight {
				sh = s
				break
			}
			k -= s.weight
		}
		h := hostSpec{
			id:       fmt.Sprintf("sim-%04d", i),
			capacity: hypervisor.Capacity{VCPUs: sh.vcpus, MemoryMiB: sh.memoryGiB << 10, DiskGiB: sh.diskGiB},
		}
		if i%10 != 9 {
			h.labels = map[string]string{"zone": zones[i%3]}
		}
		out[i] = h
	}
	return out
}

// agent is one simulated host: an agent node, as cmd/flotilla-agent runs
// one, on a fake hypervisor of the host's size.
type agent struct {
	spec    hostSpec
	node    *agentnode.Node
	started bool          // Run was called: it closes the node
	done    chan struct{} // closed when Run returns
}

// cluster is the coordinators, the agents and the API connections.
type cluster struct {
	dir      string
	agentDir string       // parent of the agents' journals
	nodes    []*node.Node // nodes[0] bootstrapped the cluster
	closed   []bool       // closed by the failover
	ackedN   atomic.Int64 // creates acknowledged so far
	connNode []int        // the node each of conns dials
	policy   scheduler.Policy
	hosts    []hostSpec
	agents   []*agent
	conns    []*grpc.ClientConn // API connections for the clients, round robin
	log      *slog.Logger

	agentCtx                     context.Context
	stopAgents                   context.CancelFunc
	coordinatorUp, agentsStarted time.Duration
}

// startCluster starts the coordinator and the agents. On error it returns
// what it started, for close.
func startCluster(ctx context.Context, o options, log *slog.Logger) (*cluster, error) {
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "flotilla-sim-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, log: log, hosts: hostSpecs(o.hosts, o.seed),
		policy: scheduler.Policy{Pack: o.pack, CPUOvercommit: o.cpuOvercommit, MemoryOvercommit: 1, DiskOvercommit: 1}}
	c.agentCtx, c.stopAgents = context.WithCancel(context.Background())

	c.agentDir = filepath.Join(dir, "agents")
	if o.agentDir != "" {
		if c.agentDir, err = os.MkdirTemp(o.agentDir, "flotilla-sim-agents-"); err != nil {
			return c, err
		}
	}
	for i := range o.coordinators {
		raftAddr, err := freeAddr()
		if err != nil {
			return c, err
		}
		cfg := node.Config{
			NodeID: fmt.Sprintf("sim-coordinator-%d", i), DataDir: filepath.Join(dir, fmt.Sprintf("coordinator-%d", i)), RaftAddr: raftAddr,
			// Short Raft timeouts only alone: a cluster on a loaded machine
			// then flaps between leaders; with the defaults a failover
			// takes what it would in production.
			APIAddr: "127.0.0.1:0", Bootstrap: i == 0, FastRaft: o.coordinators == 1, Placement: c.policy, Logger: log,
		}
		if i > 0 {
			cfg.Join = c.nodes[0].Addr()
		}
		n, err := node.Start(cfg)
		if err != nil {
			return c, fmt.Errorf("start coordinator %d: %w", i, err)
		}
		c.nodes = append(c.nodes, n)
		c.closed = append(c.closed, false)
		for i == 0 && !n.IsLeader() {
			if time.Since(t0) > 15*time.Second {
				return c, errors.New("the coordinator did not become leader in 15s")
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return c, err
			}
		}
	}
	// Every member a voter before the load starts (a joiner is promoted
	// once it has caught up).
	for o.coordinators > 1 {
		ms, err := c.nodes[0].Raft.Members()
		voters := 0
		for _, m := range ms {
			if m.Voter {
				voters++
			}
		}
		if err == nil && voters == o.coordinators {
			break
		}
		if time.Since(t0) > 60*time.Second {
			return c, fmt.Errorf("only %d of %d coordinators voting after 60s (%v)", voters, o.coordinators, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return c, err
		}
	}
	c.coordinatorUp = time.Since(t0)
	logf("%d coordinator(s) up, %s leading (data %s) after %s", len(c.nodes), c.nodes[0].Addr(), dir, c.coordinatorUp.Round(time.Millisecond))

	// Connections to every coordinator, the bootstrapping one (which the
	// failover closes) last: conns[0] serves the watch and the final reads.
	var order []*node.Node
	order = append(order, c.nodes[1:]...)
	order = append(order, c.nodes[0])
	nconns := max(min(o.clients, 8), len(order))
	for k := range nconns {
		conn, err := grpc.NewClient(order[k%len(order)].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return c, err
		}
		c.conns = append(c.conns, conn)
		c.connNode = append(c.connNode, slices.Index(c.nodes, order[k%len(order)]))
	}

	// Open the journals in parallel: each Open writes (and fsyncs) twice.
	c.agents = make([]*agent, len(c.hosts))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				a, err := c.newAgent(c.hosts[i])
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				c.agents[i] = a
				mu.Unlock()
			}
		})
	}
	for i := range c.hosts {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		return c, first
	}
	for _, a := range c.agents {
		a.started = true
		go func() {
			defer close(a.done)
			if err := a.node.Run(c.agentCtx); err != nil {
				log.Error("agent session ended", "host", a.spec.id, "err", err)
			}
		}()
	}
	c.agentsStarted = time.Since(t0)
	logf("%d agents started after %s", len(c.agents), c.agentsStarted.Round(time.Millisecond))
	return c, nil
}

// newAgent makes one host's agent node (its journal opened) on a fake
// hypervisor of the host's size, serving no peer transfers.
func (c *cluster) newAgent(h hostSpec) (*agent, error) {
	n, err := agentnode.New(agentnode.Config{
		Coordinator: c.addrs(), HostID: h.id, StateDir: filepath.Join(c.agentDir, h.id),
		Driver:       fake.New(fake.Options{Kind: "fake", Capacity: h.capacity}),
		AgentVersion: "flotilla-sim", Labels: h.labels, Logger: c.log,
	})
	if err != nil {
		return nil, err
	}
	return &agent{spec: h, node: n, done: make(chan struct{})}, nil
}

// waitReady polls ListHosts until n hosts are READY.
func (c *cluster) waitReady(ctx context.Context, n int) error {
	api := pb.NewHostServiceClient(c.conns[0])
	deadline := time.Now().Add(2 * time.Minute)
	lastLog := time.Now()
	for {
		resp, err := api.ListHosts(ctx, &pb.ListHostsRequest{})
		if status.Code(err) == codes.Unavailable && time.Now().Before(deadline) {
			_ = sleep(ctx, 200*time.Millisecond) // a member between leaders: asked again
			continue
		}
		if err != nil {
			return fmt.Errorf("ListHosts: %w", err)
		}
		ready := 0
		for _, h := range resp.Hosts {
			if h.Status == pb.HostStatus_HOST_STATUS_READY {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		if time.Since(lastLog) > 5*time.Second {
			logf("%d of %d hosts READY", ready, n)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d hosts READY after 2 minutes", ready, n)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// close stops the agents (each node's Run closes its session, executor,
// journal and driver; a node never run is closed here), then the
// coordinator, and removes the temp dir.
func (c *cluster) close() error {
	var errs []error
	c.stopAgents()
	for _, a := range c.agents {
		switch {
		case a == nil:
		case !a.started:
			errs = append(errs, a.node.Close())
		default:
			select {
			case <-a.done:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("agent %s: session did not end in 10s", a.spec.id))
			}
		}
	}
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	for i, n := range c.nodes {
		if c.closed[i] {
			continue
		}
		// Bounded: node.Close waits for the orchestrator's pass, which does
		// not stop for cancellation and ends every expired operation with
		// its own Raft apply first; after an overloaded run that is minutes.
		closed := make(chan error, 1)
		go func() { closed <- n.Close() }()
		select {
		case err := <-closed:
			errs = append(errs, err)
		case <-time.After(30 * time.Second):
			logf("coordinator did not close in 30s (its orchestrator is still ending expired operations one Raft apply at a time); abandoned")
		}
	}
	if c.agentDir != filepath.Join(c.dir, "agents") {
		errs = append(errs, os.RemoveAll(c.agentDir))
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// addrs is every coordinator's API address, comma-separated (what an agent dials).
func (c *cluster) addrs() string {
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.Addr())
	}
	return strings.Join(a, ",")
}

// live is a connection to a coordinator the failover did not close.
func (c *cluster) live() *grpc.ClientConn {
	for k, conn := range c.conns {
		if !c.closed[c.connNode[k]] {
			return conn
		}
	}
	return c.conns[0]
}

// leader is the coordinator leading now, or nil.
func (c *cluster) leader() (int, *node.Node) {
	for i, n := range c.nodes {
		if !c.closed[i] && n.IsLeader() {
			return i, n
		}
	}
	return -1, nil
}

// freeAddr picks a free loopback port for the Raft transport (it needs a
// concrete port to advertise).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// hostMonitor polls ListHosts every few seconds during the run and records
// every host it saw not READY: the coordinator marks a host DOWN when its
// agent's heartbeats are not processed in time, which in this process can
// only mean the coordinator fell behind.
type hostMonitor struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	res    hostsDown
}

type hostsDown struct {
	distinct   int // hosts seen not READY at least once
	maxAtOnce  int
	polls      int
	pollErrors int
}

func (c *cluster) monitorHosts(ctx context.Context) *hostMonitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &hostMonitor{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		seen := map[string]bool{}
		for sleep(ctx, 5*time.Second) == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := pb.NewHostServiceClient(c.live()).ListHosts(cctx, &pb.ListHostsRequest{})
			cancel()
			m.res.polls++
			if err != nil {
				m.res.pollErrors++
				continue
			}
			n := 0
			for _, h := range resp.Hosts {
				if h.Status != pb.HostStatus_HOST_STATUS_READY {
					n++
					seen[h.Id] = true
				}
			}
			m.res.maxAtOnce = max(m.res.maxAtOnce, n)
			m.res.distinct = len(seen)
		}
	}()
	return m
}

// stop ends the polling and returns what it saw.
func (m *hostMonitor) stop() hostsDown {
	m.once.Do(func() {
		m.cancel()
		<-m.done
	})
	return m.res
}
