package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
)

// ErrNotLeader is returned by Apply on a server that is not the leader.
var ErrNotLeader = errors.New("not the raft leader")

// Config configures one coordinator's Raft node.
type Config struct {
	NodeID   string // stable id of this server
	DataDir  string // raft.db and snapshots/ live here
	BindAddr string // host:port for the Raft transport
	// Bootstrap forms a new single-server cluster when the data dir holds no
	// Raft state yet. A server joining an existing cluster leaves it false.
	Bootstrap bool
	// FastTimeouts shortens election timeouts for tests on loopback.
	FastTimeouts bool
	// SnapshotThreshold is how many new entries trigger a snapshot, and
	// TrailingLogs how many entries are kept behind it; a follower further
	// behind catches up from the snapshot. Zero keeps the defaults.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// ServerTLS and ClientTLS, when set, run the Raft transport over
	// mutual TLS (see tlsLayer); both must then require a coordinator's
	// certificate of the peer. Nil: plain TCP.
	ServerTLS, ClientTLS *tls.Config
	Logger               *slog.Logger
	// Committed, when set, is told of every entry the group committer
	// proposed, once committed and applied here: how many commands it
	// held and how long it took from Apply to applied (metrics). Called
	// once per entry, off the proposers' path.
	Committed func(commands int, took time.Duration)
}

// Store is one Raft node plus its FSM.
type Store struct {
	id        string
	raft      *raft.Raft
	fsm       *fsm.FSM
	logs      *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	log       *slog.Logger
	committed func(commands int, took time.Duration) // see Config.Committed; nil: none
	props     chan *proposal                         // commands to commit, taken by the group committer
	stop      chan struct{}                          // closed by Close
	closeOnce sync.Once
}

// Open starts the Raft node. The FSM is restored from the latest snapshot
// and the log by Raft itself before Open returns control to the caller's
// first Apply.
func Open(cfg Config, f *fsm.FSM) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = newHCLogger(cfg.Logger)
	rc.SnapshotThreshold = 8192
	rc.SnapshotInterval = 30 * time.Second
	rc.TrailingLogs = 10240
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		rc.SnapshotInterval = time.Second
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	// Group commit: concurrent applies are taken from the channel together
	// and written to the log in one batch, one fsync for all of them; each
	// is still acknowledged only once committed on a quorum.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	if cfg.FastTimeouts {
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}

	// Every append is fsynced. The free-page list is not written on each
	// commit but rebuilt when the file is opened (as etcd runs bbolt): once
	// log compaction has freed pages, writing that list made every append
	// pay for it. The map free list allocates in O(1).
	bolt := &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db"), BoltOptions: bolt})
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 3, rc.Logger)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("open snapshots: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.BindAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft address %q: %w", cfg.BindAddr, err)
	}
	var transport *raft.NetworkTransport
	if cfg.ServerTLS != nil || cfg.ClientTLS != nil {
		if cfg.ServerTLS == nil || cfg.ClientTLS == nil {
			logs.Close()
			return nil, errors.New("raft transport: TLS needs both a server and a client configuration")
		}
		if addr.IP == nil || addr.IP.IsUnspecified() {
			logs.Close()
			return nil, fmt.Errorf("raft transport: %q is not an address peers can dial", cfg.BindAddr)
		}
		var layer *tlsLayer
		if layer, err = newTLSLayer(cfg.BindAddr, addr, cfg.ServerTLS, cfg.ClientTLS, cfg.Logger); err == nil {
			transport = raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, rc.Logger)
		}
	} else {
		transport, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, addr, 3, 10*time.Second, rc.Logger)
	}
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft transport: %w", err)
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, logs, snaps)
		if err != nil {
			logs.Close()
			transport.Close()
			return nil, fmt.Errorf("inspect raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: transport.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, logs, logs, snaps, transport, conf); err != nil {
				logs.Close()
				transport.Close()
				return nil, fmt.Errorf("bootstrap: %w", err)
			}
		}
	}
	// Recent entries stay in memory: replication reads them back right
	// after writing them, and boltdb reads are not free.
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		logs.Close()
		transport.Close()
		return nil, fmt.Errorf("log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, f, cached, logs, snaps, transport)
	if err != nil {
		logs.Close()
		transport.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	st := &Store{id: cfg.NodeID, raft: r, fsm: f, logs: logs, transport: transport, log: cfg.Logger, committed: cfg.Committed,
		props: make(chan *proposal), stop: make(chan struct{})}
	go st.group(st.stop)
	return st, nil
}

// IsLeader reports whether this node is the leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderCh delivers true when this node becomes leader and false when it stops being leader.
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// Leader returns the current leader's Raft address and id, if known.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// WaitLeader blocks until some node is leader or ctx ends.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if a, _ := s.raft.LeaderWithID(); a != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Barrier waits until every entry committed before it is applied locally;
// a new leader calls it before acting on its state.
func (s *Store) Barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return s.raft.Barrier(timeout).Error()
}

// Snapshot forces a snapshot now and returns its index.
func (s *Store) Snapshot() (uint64, error) {
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil {
		return 0, err
	}
	meta, _, err := f.Open()
	if err != nil {
		return 0, err
	}
	return meta.Index, nil
}

// ID is this node's id.
func (s *Store) ID() string { return s.id }

// LogVersion is the cluster's log version as this server has applied it.
func (s *Store) LogVersion() uint32 { return s.fsm.LogVersion() }

// State is this node's Raft state: Leader, Follower, Candidate or Shutdown.
func (s *Store) State() string { return s.raft.State().String() }

// Indexes are this node's last log index, commit index and the index last
// handed to the FSM.
func (s *Store) Indexes() (last, commit, applied uint64) {
	return s.raft.LastIndex(), s.raft.CommitIndex(), s.raft.AppliedIndex()
}

// Member is one server in the Raft configuration.
type Member struct {
	ID, Address string
	Voter       bool
}

// Members returns the committed Raft configuration.
func (s *Store) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Member
	for _, srv := range f.Configuration().Servers {
		out = append(out, Member{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds (or confirms) a voting member. Only the leader can.
func (s *Store) AddVoter(id, addr string, timeout time.Duration) error {
	return s.membership(s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout))
}

// RemoveServer removes a member. Only the leader can.
func (s *Store) RemoveServer(id string, timeout time.Duration) error {
	return s.membership(s.raft.RemoveServer(raft.ServerID(id), 0, timeout))
}

func (s *Store) membership(f raft.IndexFuture) error {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return fmt.Errorf("raft membership change: %w", err)
	}
	return nil
}

// Stats returns Raft's own counters.
func (s *Store) Stats() map[string]string { return s.raft.Stats() }

// Close shuts the node down and releases its files.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	err := s.raft.Shutdown().Error()
	if cerr := s.transport.Close(); err == nil {
		err = cerr
	}
	if cerr := s.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

var _ io.Closer = (*Store)(nil)
