// Package inproc runs a whole cluster in the test's own process: one
// coordinator (coordinator/node: single-node Raft on a temp dir, the API and
// the agent link on a loopback listener) and agents (agent/node) on fake
// hypervisors, talking gRPC over TCP as deployed ones do. A cluster starts
// in well under a second, so tests of the API handlers, the agent link and
// the orchestrator together run under -short.
package inproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	agentnode "github.com/flotilla-vm/flotilla/agent/node"
	"github.com/flotilla-vm/flotilla/coordinator/node"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/freeport"
	"github.com/flotilla-vm/flotilla/internal/netfault"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Bound is how long a harness wait takes before it fails the test: a bound
// on failure, not a pause (every wait ends as soon as its condition holds).
const Bound = 30 * time.Second

// Options configures a cluster.
type Options struct {
	// Hosts is how many agents to start, as hosts h-1, h-2, ...; default 1.
	Hosts int
	// HeartbeatInterval is what the coordinator tells agents; default 500ms.
	HeartbeatInterval time.Duration
	// Logger is the coordinator's and the agents'; default discards.
	Logger *slog.Logger
	// Partitionable puts a relay between each agent and the coordinator
	// (Host.Link), which a test cuts to partition them.
	Partitionable bool
	// Moves lets the agents move disks to each other: each serves its
	// peer service on a loopback port.
	Moves bool
}

// Cluster is a running coordinator with its agents, and API clients.
type Cluster struct {
	Coordinator *node.Node
	Hosts       []*Host

	Instances  pb.InstanceServiceClient
	Operations pb.OperationServiceClient
	HostAPI    pb.HostServiceClient

	t     testing.TB
	dir   string
	log   *slog.Logger
	moves bool
}

// Host is one agent and its fake hypervisor.
type Host struct {
	ID     string
	Driver *fake.Driver
	// Link is the relay between the agent and the coordinator, with
	// Options.Partitionable; nil without.
	Link *netfault.Relay
	stop context.CancelFunc

	mu     sync.Mutex
	madeBy map[string]map[string]int // operation id → how → domains made
	done   chan error                // Run's error
}

// Start brings a cluster up and waits until every host is READY; the test's
// cleanup takes it down.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Hosts <= 0 {
		o.Hosts = 1
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Cluster{t: t, dir: t.TempDir(), log: o.Logger, moves: o.Moves}
	raftAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	c.Coordinator, err = node.Start(node.Config{
		NodeID: "inproc", DataDir: filepath.Join(c.dir, "coordinator"), RaftAddr: raftAddr, APIAddr: "127.0.0.1:0",
		Bootstrap: true, FastRaft: true, HeartbeatInterval: o.HeartbeatInterval, Logger: o.Logger,
	})
	if err != nil {
		t.Fatalf("start coordinator: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Coordinator.Close(); err != nil {
			t.Errorf("close coordinator: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	if err := c.Coordinator.Raft.WaitLeader(ctx); err != nil {
		t.Fatalf("coordinator did not lead: %v", err)
	}

	conn, err := grpc.NewClient(c.Coordinator.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.Instances, c.Operations, c.HostAPI = pb.NewInstanceServiceClient(conn), pb.NewOperationServiceClient(conn), pb.NewHostServiceClient(conn)

	for i := range o.Hosts {
		c.Hosts = append(c.Hosts, c.startHost(fmt.Sprintf("h-%d", i+1), o.Partitionable))
	}
	for _, h := range c.Hosts {
		c.WaitHost(h.ID, state.HostReady)
	}
	return c
}

// startHost runs one agent node on a fresh fake hypervisor; the test's
// cleanup stops it (before the coordinator closes: cleanups run in reverse).
func (c *Cluster) startHost(id string, partitionable bool) *Host {
	c.t.Helper()
	h := &Host{ID: id, Driver: fake.New(fake.Options{Capacity: agentnode.FakeCapacity, Images: []string{"flotilla-test"}})}
	if partitionable {
		var err error
		if h.Link, err = netfault.Listen(c.Coordinator.Addr(), c.log); err != nil {
			c.t.Fatalf("relay for %s: %v", id, err)
		}
		// Closed after the agent stops (cleanups run in reverse).
		c.t.Cleanup(func() { h.Link.Close() })
	}
	c.runAgent(h)
	c.t.Cleanup(func() { h.Stop(c.t); h.Driver.Close() })
	return h
}

// runAgent starts an agent node for h on its hypervisor and state directory.
func (c *Cluster) runAgent(h *Host) {
	c.t.Helper()
	coord, peer := c.Coordinator.Addr(), ""
	if h.Link != nil {
		coord = h.Link.Addr()
	}
	if c.moves {
		peer = "127.0.0.1:0"
	}
	n, err := agentnode.New(agentnode.Config{
		Coordinator: coord, PeerListen: peer, HostID: h.ID, Driver: hostDriver{Driver: h.Driver, h: h}, StateDir: filepath.Join(c.dir, "agents", h.ID),
		AgentVersion: "inproc", Logger: c.log,
	})
	if err != nil {
		c.t.Fatalf("agent %s: %v", h.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- n.Run(ctx) }()
}

// hostDriver is the host's hypervisor as its agents see it: it outlives
// each agent (an agent's end does not end the host's domains), and it
// counts the domains each operation made (see Host.Made).
type hostDriver struct {
	*fake.Driver
	h *Host
}

func (hostDriver) Close() error { return nil }

func (d hostDriver) Create(ctx context.Context, spec hypervisor.DomainSpec) error {
	return d.h.made(ctx, "create", d.Driver.Create(ctx, spec))
}

func (d hostDriver) ImportDomain(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
	return d.h.made(ctx, "import", d.Driver.ImportDomain(ctx, spec, disk))
}

func (d hostDriver) AdoptDisk(ctx context.Context, spec hypervisor.DomainSpec) error {
	return d.h.made(ctx, "adopt", d.Driver.AdoptDisk(ctx, spec))
}

// made counts a domain the step of ctx made, when err says it did.
func (h *Host) made(ctx context.Context, how string, err error) error {
	if err != nil {
		return err
	}
	if id, ok := executor.StepFromContext(ctx); ok {
		h.mu.Lock()
		if h.madeBy == nil {
			h.madeBy = map[string]map[string]int{}
		}
		if h.madeBy[id.OperationID] == nil {
			h.madeBy[id.OperationID] = map[string]int{}
		}
		h.madeBy[id.OperationID][how]++
		h.mu.Unlock()
	}
	return nil
}

// Made is how many domains operation opID made on this host, by how
// ("create", "import", "adopt"), across every agent the host ran: more
// than one of a kind is the operation's effect applied twice.
func (h *Host) Made(opID string) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.madeBy[opID])
}

// RestartHost ends the host's agent as a crash does (its running steps are
// abandoned, their journal records left "started") and starts a new agent
// on the same hypervisor and state directory.
func (c *Cluster) RestartHost(id string) {
	c.t.Helper()
	h := c.Host(id)
	h.Stop(c.t)
	c.runAgent(h)
}

// Stop ends the host's agent (its session, executor and hypervisor) and
// waits for it; stopping it again does nothing.
func (h *Host) Stop(t testing.TB) {
	t.Helper()
	h.stop()
	select {
	case err, ok := <-h.done:
		if ok && err != nil {
			t.Errorf("agent %s: %v", h.ID, err)
		}
		if ok {
			close(h.done)
		}
	case <-time.After(Bound):
		t.Errorf("agent %s did not stop", h.ID)
	}
}

// WaitHost waits until the coordinator records the host with status.
func (c *Cluster) WaitHost(id string, status state.HostStatus) {
	c.t.Helper()
	c.waitState(fmt.Sprintf("host %s %s", id, status), func(s *state.Store) bool {
		h, err := s.Host(id)
		return err == nil && h.Status == status
	})
}

// waitState waits until cond holds of the coordinator's state, checking it
// at every change.
func (c *Cluster) waitState(what string, cond func(*state.Store) bool) {
	c.t.Helper()
	s := c.Coordinator.Store
	deadline := time.After(Bound)
	for {
		changed := s.Changed()
		if cond(s) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			c.t.Fatalf("timed out after %s waiting for %s", Bound, what)
		}
	}
}

// Wait waits for the operation a call started and returns it done.
func (c *Cluster) Wait(op *pb.Operation) *pb.Operation {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	for !op.GetDone() {
		var err error
		op, err = c.Operations.WaitOperation(ctx, &pb.WaitOperationRequest{Id: op.GetId(), Timeout: durationpb.New(Bound), MinRevision: op.GetRevision()})
		if err != nil {
			c.t.Fatalf("wait for operation: %v", err)
		}
	}
	return op
}

// Host returns the host with id, or nil.
func (c *Cluster) Host(id string) *Host {
	for _, h := range c.Hosts {
		if h.ID == id {
			return h
		}
	}
	return nil
}
