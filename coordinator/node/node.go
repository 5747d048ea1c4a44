// Package node wires one coordinator process: the Raft store and FSM, the
// gRPC server (public API, agent link, reflection, health) and, while this
// node leads, the orchestrator.
package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/flotilla-vm/flotilla/coordinator/agentlink"
	"github.com/flotilla-vm/flotilla/coordinator/api"
	"github.com/flotilla-vm/flotilla/coordinator/billing"
	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/forward"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/limits"
	"github.com/flotilla-vm/flotilla/coordinator/membership"
	"github.com/flotilla-vm/flotilla/coordinator/metrics"
	"github.com/flotilla-vm/flotilla/coordinator/orchestrator"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/readiness"
	"github.com/flotilla-vm/flotilla/coordinator/readyz"
	"github.com/flotilla-vm/flotilla/coordinator/recovery"
	"github.com/flotilla-vm/flotilla/coordinator/retention"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/coordinator/staleness"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/upgrade"
	"github.com/flotilla-vm/flotilla/internal/authz"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Config configures one coordinator.
type Config struct {
	NodeID            string
	DataDir           string
	RaftAddr          string // Raft transport, host:port
	APIAddr           string // gRPC API and agent link, host:port (port 0 picks one)
	Bootstrap         bool
	Join              string // API address of any member to join through; empty to not join
	FastRaft          bool   // short Raft timeouts, for tests on loopback
	SnapshotThreshold uint64
	TrailingLogs      uint64
	HeartbeatInterval time.Duration
	ResyncInterval    time.Duration
	Placement         scheduler.Policy
	// TLS turns on mutual TLS for the listener and for dials to other coordinators.
	TLS       mtls.Files
	Deadlines map[lifecycle.OpKind]time.Duration
	// HistoryRetention is how long a deleted instance's records (its
	// operations, its usage) are kept after its deletion; 0 keeps them.
	HistoryRetention time.Duration
	// BillingInterval is how often billed projects are charged for their
	// usage (and frozen when their balance runs out); 0: DefaultBillingInterval.
	BillingInterval time.Duration
	// SoftDeleteRetention is the retention window of soft-deleted
	// instances: a delete keeps them restorable that long, then the leader
	// reclaims them (0: a delete deletes at once).
	SoftDeleteRetention time.Duration
	// ReadinessTimeout is how long a booting guest may take to be ready when
	// its create says nothing (0: never stranded).
	ReadinessTimeout time.Duration
	// LogVersionMax caps the log version this server advertises and, when
	// it leads, raises the cluster to (0: the newest it supports). Tests
	// set 1 to stand for a server of the previous release.
	LogVersionMax uint32
	// Metrics, when set, is told of what this coordinator does (API calls,
	// Raft entries, operations) and reads its state when scraped.
	Metrics *metrics.Coordinator
	Logger  *slog.Logger
	// InsecureDev acknowledges plaintext (no TLS): every caller then holds
	// every role. Plaintext listeners must be on loopback either way.
	InsecureDev bool
	// Limits bounds each caller (nil: limits.Defaults).
	Limits *limits.Config
	// StaleReadBound is how long this member may know no leader before it
	// refuses reads with UNAVAILABLE (0: DefaultStaleReadBound; negative:
	// never). Health says NOT_SERVING after one election timeout.
	StaleReadBound time.Duration
}

// DefaultStaleReadBound is Config.StaleReadBound's default: longer than an
// election, so a change of leader does not fail reads.
const DefaultStaleReadBound = 5 * time.Second

// Keepalive between coordinators (and from clients): a server closes the
// connection of a client that pings more often than minPingInterval, so
// followers ping leaders less often than that.
const (
	minPingInterval  = 5 * time.Second
	peerPingInterval = 10 * time.Second
	peerPingTimeout  = 5 * time.Second
)

// Fails to compile if followers would ping faster than leaders allow.
const _ = uint64(peerPingInterval - minPingInterval)

// Node is a running coordinator.
type Node struct {
	Store  *state.Store
	Raft   *raftstore.Store
	Agents *agentlink.Server

	grpc   *grpc.Server
	fwd    *forward.Forwarder
	dial   []grpc.DialOption // for other coordinators
	lis    net.Listener
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	gate   *upgrade.Gate
	// secrets holds SetPassword's passwords between the API and the
	// orchestrator, in this process's memory only.
	secrets *secrets.Store
	// orch is the orchestrator while this node leads (nil otherwise); the
	// agent link hands it agents' answers about steps.
	orch atomic.Pointer[orchestrator.Orchestrator]
}

// Start opens the data dir, joins or forms the Raft cluster and serves.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	store := state.New(0)
	f := fsm.New(store, cfg.Logger)
	rc := raftstore.Config{
		NodeID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr,
		Bootstrap: cfg.Bootstrap && cfg.Join == "", FastTimeouts: cfg.FastRaft, Logger: cfg.Logger,
		SnapshotThreshold: cfg.SnapshotThreshold, TrailingLogs: cfg.TrailingLogs,
	}
	if err := checkPlaintext(cfg); err != nil {
		return nil, err
	}
	lim := limits.Defaults
	if cfg.Limits != nil {
		lim = *cfg.Limits
	}
	limiter := limits.New(lim)
	readBound := cfg.StaleReadBound
	if readBound == 0 {
		readBound = DefaultStaleReadBound
	}
	election := time.Second // hashicorp/raft's default, which raftstore keeps
	if cfg.FastRaft {
		election = 200 * time.Millisecond
	}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if m := cfg.Metrics; m != nil {
		store.OnOperationEnd(m.OperationEnded)
		rc.Committed = m.Committed
		unary = append(unary, m.UnaryInterceptor())
		stream = append(stream, m.StreamInterceptor())
	}
	if cfg.TLS.Enabled() {
		// The Raft port takes coordinators only, under the same certificates.
		srv, err := mtls.Server(cfg.TLS)
		if err != nil {
			return nil, err
		}
		cli, err := mtls.Client(cfg.TLS)
		if err != nil {
			return nil, err
		}
		rc.ServerTLS, rc.ClientTLS = mtls.RequirePeer(srv, mtls.RoleCoordinator, ""), mtls.RequirePeer(cli, mtls.RoleCoordinator, "")
	}
	rs, err := raftstore.Open(rc, f)
	if err != nil {
		return nil, err
	}
	leaderless := staleness.New(rs, election, readBound, nil)
	// Authorization first (it names the caller the limits count), on every
	// call: the guard runs before a follower forwards a write.
	guard := chainGuard(authz.Unary(caller.Principal), limiter.Unary(), leaderless.Unary(isLocalRead))
	stream = append([]grpc.StreamServerInterceptor{authz.Stream(caller.Principal), limiter.Stream(), leaderless.Stream(isLocalRead)}, stream...)
	lis, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		rs.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.APIAddr, err)
	}
	n := &Node{Store: store, Raft: rs, lis: lis, log: cfg.Logger, cfg: cfg, secrets: secrets.New(nil)}
	serverOpts, dialOpts, err := transportSecurity(cfg.TLS)
	if err != nil {
		lis.Close()
		rs.Close()
		return nil, err
	}
	n.dial = dialOpts
	supported := fsm.SupportedLogVersion
	if cfg.LogVersionMax != 0 {
		supported = min(supported, cfg.LogVersionMax)
	}
	n.gate = upgrade.New(gateCluster{n}, n.probeLogVersion, supported, cfg.Logger)
	var visible func(string, time.Duration)
	if cfg.Metrics != nil {
		visible = cfg.Metrics.EventVisible
	}
	links := agentlink.New(agentlink.Config{Applier: rs, Logger: cfg.Logger, HeartbeatInterval: cfg.HeartbeatInterval, ResyncInterval: cfg.ResyncInterval, LeaderAPIAddr: n.LeaderAPIAddr, Store: store,
		OnStepReport: func(hostID string, epoch uint64, r *agentv1.StepReport) {
			if o := n.orch.Load(); o != nil {
				o.StepReport(hostID, epoch, r)
			}
		}, EventVisible: visible})
	// Followers ping the leader on idle connections too, so a relay stream
	// to a leader that vanished (no FIN, no RST) fails within seconds
	// rather than when TCP gives up.
	fwdDial := append(slices.Clone(dialOpts), grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: peerPingInterval, Timeout: peerPingTimeout, PermitWithoutStream: true,
	}))
	fwd, err := forward.New(n, api.WriteMethods, 5*time.Second, cfg.Logger, fwdDial...)
	if err != nil {
		lis.Close()
		rs.Close()
		return nil, err
	}
	gs := grpc.NewServer(append(serverOpts,
		// Every unary interceptor goes here, after the forwarder, and in
		// no other option: writes relayed by followers run through this
		// same list on the leader (the server's own chain cannot be read
		// back), and API calls fail if the server has any other.
		fwd.GuardedServerOption(guard, unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Replies relayed from the leader go to clients as they came.
		fwd.ServerCodec(),
		// Calls run on kept goroutines whose stacks have already grown to
		// a handler's depth (a new goroutine per call grew, and copied, its
		// stack on every write); when all are busy a call gets a new one.
		grpc.NumStreamWorkers(64),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)...)
	// Through the forwarder, so writes relayed by followers run on the same handlers.
	api.Register(fwd.Registrar(gs), api.Config{Store: store, Applier: rs, Cluster: rs, Upgrade: n.gate, Policy: cfg.Placement, Deadlines: cfg.Deadlines, ReadinessTimeout: cfg.ReadinessTimeout, Logger: cfg.Logger,
		Secrets: n.secrets, SoftDeleteRetention: cfg.SoftDeleteRetention, Encoded: fwd.Encoded})
	fwd.RegisterRelay(gs)
	agentv1.RegisterAgentServiceServer(gs, links)
	if cfg.Metrics != nil {
		cfg.Metrics.Observe(rs, store, links)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	ctx, cancel := context.WithCancel(context.Background())
	n.Agents, n.grpc, n.fwd, n.cancel = links, gs, fwd, cancel
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
	if cfg.Join != "" {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.join(ctx, cfg.Join)
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		leaderless.Run(ctx, hs, min(election/4, 250*time.Millisecond))
	}()
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
				n.registerSelf(ctx)
				lctx, cancel := context.WithCancel(ctx)
				stop = cancel
				done = make(chan struct{})
				o := orchestrator.New(orchestrator.Config{Store: n.Store, Applier: n.Raft, Sessions: links, Images: links, Logger: n.log, Policy: n.cfg.Placement,
					Secrets: n.secrets})
				n.orch.Store(o)
				go func() { defer close(done); defer n.orch.CompareAndSwap(o, nil); o.Run(lctx) }()
				go links.Watch(lctx)
				go recovery.Run(lctx, n.Store, n.Raft, n.log)
				go retention.Run(lctx, n.Store, n.Raft, n.cfg.HistoryRetention, n.log)
				go billing.Run(lctx, n.Store, n.Raft, n.syncProject, cmp.Or(n.cfg.BillingInterval, DefaultBillingInterval), n.log)
				go retention.Reclaim(lctx, n.Store, n.Raft, n.cfg.SoftDeleteRetention, n.log)
				go readiness.Run(lctx, n.Store, n.Raft, n.log)
				go n.startUsage(lctx)
				go n.gate.Run(lctx, 2*time.Second)
				go membership.Promote(lctx, promoterCluster{n.Raft}, n.Raft.Policy(), 250*time.Millisecond, n.log)
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

// Ready returns nil when this member knows a leader and has applied all
// it knows committed, else why not (readyz.Check).
func (n *Node) Ready() error { return readyz.Check(n.Raft) }

// IsLeader reports whether this node leads.
func (n *Node) IsLeader() bool { return n.Raft.IsLeader() }

// LeaderAPIAddr is the leader's API address from the server registry.
func (n *Node) LeaderAPIAddr() (string, bool) {
	_, id := n.Raft.Leader()
	if id == "" {
		return "", false
	}
	for _, s := range n.Store.Servers() {
		if s.ID == id && s.APIAddr != "" {
			return s.APIAddr, true
		}
	}
	return "", false
}

// registerSelf records this (new) leader's addresses, so followers can
// forward to it and agents can be pointed at it.
func (n *Node) registerSelf(ctx context.Context) {
	self := state.Server{ID: n.cfg.NodeID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.Addr()}
	if _, err := fsm.Propose(ctx, n.Raft, fsm.TypeRegisterServer, time.Now(), fsm.RegisterServer{Server: self}); err != nil {
		n.log.Warn("registering this leader's address failed", "err", err)
	}
}

// startUsage turns usage recording on through the log, if it is not yet
// (a new cluster, or one upgraded from a version without it), trying again
// until it is or this node stops leading.
func (n *Node) startUsage(ctx context.Context) {
	for wait := 100 * time.Millisecond; !n.Store.Metering(); wait = min(2*wait, 5*time.Second) {
		_, err := fsm.Propose(ctx, n.Raft, fsm.TypeStartUsage, time.Now(), fsm.StartUsage{})
		if err == nil {
			n.log.Info("usage recording started")
			return
		}
		n.log.Warn("starting usage recording failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// DefaultBillingInterval is how often projects are charged by default.
const DefaultBillingInterval = 10 * time.Second

// syncProject brings a project's instances in line with its frozen state.
func (n *Node) syncProject(ctx context.Context, name string) error {
	svc := service.New(service.Config{Store: n.Store, Applier: n.Raft, Policy: n.cfg.Placement, Deadlines: n.cfg.Deadlines})
	_, err := svc.SyncProject(ctx, name)
	return err
}

// promoterCluster is the Raft configuration as the non-voter promoter sees it.
type promoterCluster struct{ rs *raftstore.Store }

func (p promoterCluster) Members() ([]membership.Member, uint64, error) {
	rm, index, err := p.rs.Configuration()
	if err != nil {
		return nil, 0, err
	}
	out := make([]membership.Member, len(rm))
	for k, m := range rm {
		out[k] = membership.Member{ID: m.ID, RaftAddr: m.Address, Voter: m.Voter, LastContact: m.LastContact, LastIndex: m.LastIndex}
	}
	return out, index, nil
}

func (p promoterCluster) LastIndex() uint64 { last, _, _ := p.rs.Indexes(); return last }

func (p promoterCluster) Promote(id, raftAddr string, prevIndex uint64, timeout time.Duration) error {
	return p.rs.AddVoter(id, raftAddr, prevIndex, timeout)
}

// gateCluster is the cluster as the log version gate sees it.
type gateCluster struct{ n *Node }

func (g gateCluster) ID() string         { return g.n.cfg.NodeID }
func (g gateCluster) LogVersion() uint32 { return g.n.Raft.LogVersion() }

func (g gateCluster) Members() ([]upgrade.Member, error) {
	members, err := g.n.Raft.Members()
	if err != nil {
		return nil, err
	}
	apis := map[string]string{}
	for _, s := range g.n.Store.Servers() {
		apis[s.ID] = s.APIAddr
	}
	out := make([]upgrade.Member, len(members))
	for k, m := range members {
		out[k] = upgrade.Member{ID: m.ID, APIAddr: apis[m.ID]}
	}
	return out, nil
}

func (g gateCluster) SetLogVersion(ctx context.Context, v uint32) error {
	_, err := fsm.Propose(ctx, g.n.Raft, fsm.TypeSetLogVersion, time.Now(), fsm.SetLogVersion{Version: v})
	return err
}

// probeLogVersion asks the coordinator at addr for the newest log version
// it supports.
func (n *Node) probeLogVersion(ctx context.Context, addr string) (uint32, error) {
	conn, err := grpc.NewClient(addr, n.dial...)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := pb.NewClusterServiceClient(conn).GetNodeStatus(ctx, &pb.GetNodeStatusRequest{})
	if err != nil {
		return 0, err
	}
	return st.LogVersionMax, nil
}

// join asks the cluster, through any member, to add this server, until it
// has (adding an existing member is a no-op, so restarts may ask again).
func (n *Node) join(ctx context.Context, addr string) {
	conn, err := grpc.NewClient(addr, n.dial...)
	if err != nil {
		n.log.Error("join: bad address", "addr", addr, "err", err)
		return
	}
	defer conn.Close()
	client := pb.NewClusterServiceClient(conn)
	req := &pb.AddServerRequest{Id: n.cfg.NodeID, RaftAddress: n.cfg.RaftAddr, ApiAddress: n.Addr(), LogVersionMax: n.gate.Supported()}
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.AddServer(cctx, req)
		cancel()
		if err == nil {
			n.log.Info("joined the cluster", "via", addr)
			return
		}
		n.log.Warn("join failed; retrying", "via", addr, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

// Close stops serving and shuts Raft down.
func (n *Node) Close() error {
	n.cancel()
	n.fwd.Close()
	n.grpc.Stop()
	n.wg.Wait()
	return n.Raft.Close()
}

// isLocalRead says which calls a member answers from its own state: the
// public API's reads, but for ClusterService's (which tell what is wrong
// with the cluster, and must answer when nothing else does). Writes go to
// the leader anyway.
func isLocalRead(method string) bool {
	return strings.HasPrefix(method, "/flotilla.v1.") && !strings.HasPrefix(method, "/flotilla.v1.ClusterService/") &&
		!slices.Contains(api.WriteMethods, method)
}

// transportSecurity returns the server and dial options: mutual TLS when
// configured, else plaintext (for loopback and trusted networks only).
func transportSecurity(f mtls.Files) ([]grpc.ServerOption, []grpc.DialOption, error) {
	if !f.Enabled() {
		return nil, []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	srv, err := mtls.Server(f)
	if err != nil {
		return nil, nil, err
	}
	cli, err := mtls.Client(f)
	if err != nil {
		return nil, nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(srv))}, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cli))}, nil
}
