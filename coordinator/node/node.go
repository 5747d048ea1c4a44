// Package node wires one coordinator process: the Raft store and FSM, the
// gRPC server (public API, agent link, reflection, health) and, while this
// node leads, the orchestrator.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/flotilla-vm/flotilla/coordinator/agentlink"
	"github.com/flotilla-vm/flotilla/coordinator/api"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/orchestrator"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// Config configures one coordinator.
type Config struct {
	NodeID            string
	DataDir           string
	RaftAddr          string // Raft transport, host:port
	APIAddr           string // gRPC API and agent link, host:port (port 0 picks one)
	Bootstrap         bool
	FastRaft          bool // short Raft timeouts, for tests on loopback
	HeartbeatInterval time.Duration
	ResyncInterval    time.Duration
	Logger            *slog.Logger
}

// Node is a running coordinator.
type Node struct {
	Store  *state.Store
	Raft   *raftstore.Store
	Agents *agentlink.Server

	grpc   *grpc.Server
	lis    net.Listener
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens the data dir, joins or forms the Raft cluster and serves.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	store := state.New(0)
	f := fsm.New(store, cfg.Logger)
	rs, err := raftstore.Open(raftstore.Config{
		NodeID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr,
		Bootstrap: cfg.Bootstrap, FastTimeouts: cfg.FastRaft, Logger: cfg.Logger,
	}, f)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		rs.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.APIAddr, err)
	}
	links := agentlink.New(agentlink.Config{Applier: rs, Logger: cfg.Logger, HeartbeatInterval: cfg.HeartbeatInterval, ResyncInterval: cfg.ResyncInterval})
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	api.Register(gs, api.Config{Store: store, Applier: rs, Logger: cfg.Logger})
	agentv1.RegisterAgentServiceServer(gs, links)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Store: store, Raft: rs, Agents: links, grpc: gs, lis: lis, log: cfg.Logger, cancel: cancel}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := gs.Serve(lis); err != nil {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.lead(ctx, links)
	}()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.log.Info("coordinator serving", "api", lis.Addr().String(), "raft", cfg.RaftAddr, "node", cfg.NodeID)
	return n, nil
}

// lead runs the orchestrator for as long as this node is the leader.
func (n *Node) lead(ctx context.Context, links *agentlink.Server) {
	var stop context.CancelFunc
	var done chan struct{}
	stopLeading := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
		}
	}
	defer stopLeading()
	leaderCh := n.Raft.LeaderCh()
	isLeader := n.Raft.IsLeader()
	for {
		if isLeader && stop == nil {
			// Apply everything the previous leader committed before acting on it.
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.Raft.Barrier(bctx)
			cancel()
			if err != nil {
				n.log.Warn("barrier after election failed", "err", err)
			} else {
				lctx, cancel := context.WithCancel(ctx)
				stop = cancel
				done = make(chan struct{})
				o := orchestrator.New(orchestrator.Config{Store: n.Store, Applier: n.Raft, Sessions: links, Logger: n.log})
				go func() { defer close(done); o.Run(lctx) }()
				n.log.Info("leading: orchestrator started")
			}
		} else if !isLeader {
			stopLeading()
		}
		select {
		case <-ctx.Done():
			return
		case isLeader = <-leaderCh:
		case <-time.After(time.Second):
			isLeader = n.Raft.IsLeader() // the channel keeps only the latest change; re-check
		}
	}
}

// Addr is the address the gRPC server listens on.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// Close stops serving and shuts Raft down.
func (n *Node) Close() error {
	n.cancel()
	n.grpc.Stop()
	n.wg.Wait()
	return n.Raft.Close()
}
