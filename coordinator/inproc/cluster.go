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
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	agentnode "github.com/flotilla-vm/flotilla/agent/node"
	"github.com/flotilla-vm/flotilla/coordinator/node"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/freeport"
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
}

// Cluster is a running coordinator with its agents, and API clients.
type Cluster struct {
	Coordinator *node.Node
	Hosts       []*Host

	Instances  pb.InstanceServiceClient
	Operations pb.OperationServiceClient
	HostAPI    pb.HostServiceClient

	t   testing.TB
	dir string
	log *slog.Logger
}

// Host is one agent and its fake hypervisor.
type Host struct {
	ID     string
	Driver *fake.Driver
	stop   context.CancelFunc
	done   chan error // Run's error
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
	c := &Cluster{t: t, dir: t.TempDir(), log: o.Logger}
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
		c.Hosts = append(c.Hosts, c.startHost(fmt.Sprintf("h-%d", i+1)))
	}
	for _, h := range c.Hosts {
		c.WaitHost(h.ID, state.HostReady)
	}
	return c
}

// startHost runs one agent node on a fresh fake hypervisor; the test's
// cleanup stops it (before the coordinator closes: cleanups run in reverse).
func (c *Cluster) startHost(id string) *Host {
	c.t.Helper()
	h := &Host{ID: id, Driver: fake.New(fake.Options{Capacity: agentnode.FakeCapacity, Images: []string{"flotilla-test"}})}
	c.runAgent(h)
	c.t.Cleanup(func() { h.Stop(c.t); h.Driver.Close() })
	return h
}

// runAgent starts an agent node for h on its hypervisor and state directory.
func (c *Cluster) runAgent(h *Host) {
	c.t.Helper()
	n, err := agentnode.New(agentnode.Config{
		Coordinator: c.Coordinator.Addr(), HostID: h.ID, Driver: keepOpen{h.Driver}, StateDir: filepath.Join(c.dir, "agents", h.ID),
		AgentVersion: "inproc", Logger: c.log,
	})
	if err != nil {
		c.t.Fatalf("agent %s: %v", h.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- n.Run(ctx) }()
}

// keepOpen keeps the hypervisor across agent processes: an agent's end
// does not end the host's domains.
type keepOpen struct{ *fake.Driver }

func (keepOpen) Close() error { return nil }

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
