package api

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Cluster is the Raft node's membership surface.
type Cluster interface {
	ID() string
	State() string
	Leader() (addr, id string)
	Members() ([]raftstore.Member, error)
	AddVoter(id, addr string, timeout time.Duration) error
	RemoveServer(id string, timeout time.Duration) error
	Snapshot() (uint64, error)
	Stats() map[string]string
	// LogVersion is the cluster's log version as applied here.
	LogVersion() uint32
}

// Upgrade is the log version gate (coordinator/upgrade).
type Upgrade interface {
	// Admit runs add for a joining server supporting log versions up to
	// maxVersion, unless the cluster's log is newer.
	Admit(maxVersion uint32, add func() error) error
	// Supported is the newest log version this server advertises.
	Supported() uint32
}

type cluster struct {
	*core
	node    Cluster
	upgrade Upgrade
	pb.UnimplementedClusterServiceServer
}

func validateAddr(v *violations, field, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		v.add(field, "must be host:port")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(field, "port must be 1..65535")
	}
}

func (s *cluster) AddServer(ctx context.Context, r *pb.AddServerRequest) (*pb.AddServerResponse, error) {
	var v violations
	if !namePat.MatchString(r.Id) {
		v.add("id", "must be 1-63 lowercase letters, digits or '-'")
	}
	validateAddr(&v, "raft_address", r.RaftAddress)
	validateAddr(&v, "api_address", r.ApiAddress)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	// Addresses first: once the member is in the Raft configuration, it is
	// listed and can lead, and then its API address must be known.
	if _, err := s.apply(ctx, fsm.TypeRegisterServer, fsm.RegisterServer{Server: state.Server{ID: r.Id, RaftAddr: r.RaftAddress, APIAddr: r.ApiAddress}}); err != nil {
		return nil, toStatus(err)
	}
	if err := s.upgrade.Admit(r.LogVersionMax, func() error { return s.node.AddVoter(r.Id, r.RaftAddress, timeoutOf(ctx)) }); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("server added", "server", r.Id, "raft", r.RaftAddress, "api", r.ApiAddress)
	servers, _, err := s.servers()
	return &pb.AddServerResponse{Servers: servers}, toStatus(err)
}

func (s *cluster) RemoveServer(ctx context.Context, r *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	var v violations
	if !namePat.MatchString(r.Id) {
		v.add("id", "must be 1-63 lowercase letters, digits or '-'")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.node.RemoveServer(r.Id, timeoutOf(ctx)); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.apply(ctx, fsm.TypeRemoveServer, fsm.RemoveServer{ID: r.Id}); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("server removed", "server", r.Id)
	servers, _, err := s.servers()
	return &pb.RemoveServerResponse{Servers: servers}, toStatus(err)
}

func (s *cluster) ListServers(ctx context.Context, r *pb.ListServersRequest) (*pb.ListServersResponse, error) {
	servers, leader, err := s.servers()
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListServersResponse{Servers: servers, LeaderId: leader}, nil
}

// servers joins the Raft configuration (the truth about membership) with
// the registry's API addresses.
func (s *cluster) servers() ([]*pb.Server, string, error) {
	members, err := s.node.Members()
	if err != nil {
		return nil, "", err
	}
	apis := map[string]string{}
	for _, v := range s.store.Servers() {
		apis[v.ID] = v.APIAddr
	}
	_, leader := s.node.Leader()
	out := make([]*pb.Server, 0, len(members))
	for _, m := range members {
		suffrage := "nonvoter"
		if m.Voter {
			suffrage = "voter"
		}
		out = append(out, &pb.Server{Id: m.ID, RaftAddress: m.Address, ApiAddress: apis[m.ID], Suffrage: suffrage, Leader: m.ID == leader})
	}
	return out, leader, nil
}

func (s *cluster) GetNodeStatus(ctx context.Context, r *pb.GetNodeStatusRequest) (*pb.NodeStatus, error) {
	stats := s.node.Stats()
	num := func(k string) uint64 { n, _ := strconv.ParseUint(stats[k], 10, 64); return n }
	_, leader := s.node.Leader()
	out := &pb.NodeStatus{
		NodeId: s.node.ID(), RaftState: s.node.State(), LeaderId: leader,
		Term: num("term"), CommitIndex: num("commit_index"), AppliedIndex: num("applied_index"),
		LastSnapshotIndex: num("last_snapshot_index"), Revision: s.store.Revision(),
		LogVersion: s.node.LogVersion(), LogVersionMax: s.upgrade.Supported(),
	}
	if r.GetIncludeDigest() {
		// Only on request: it encodes and hashes the whole state.
		out.StateDigest, out.Revision = s.store.Digest()
	}
	for _, v := range s.store.Servers() {
		if v.ID == leader {
			out.LeaderApiAddress = v.APIAddr
		}
	}
	return out, nil
}

func (s *cluster) TakeSnapshot(ctx context.Context, r *pb.TakeSnapshotRequest) (*pb.TakeSnapshotResponse, error) {
	idx, err := s.node.Snapshot()
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.TakeSnapshotResponse{SnapshotIndex: idx}, nil
}

// timeoutOf is the time left on ctx, at most 30 s.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left < 30*time.Second {
			return left
		}
	}
	return 30 * time.Second
}
