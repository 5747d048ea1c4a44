package api

import (
	"context"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/membership"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Cluster is the Raft node's membership surface.
type Cluster interface {
	ID() string
	State() string
	Leader() (addr, id string)
	// Members is the Raft configuration; on the leader, with what it last
	// heard from each server over Raft.
	// Configuration also returns the configuration's index, which the
	// changes below are conditional on.
	Configuration() ([]raftstore.Member, uint64, error)
	// Policy says what counts as live and caught up.
	Policy() membership.Policy
	AddVoter(id, addr string, prevIndex uint64, timeout time.Duration) error
	AddNonvoter(id, addr string, prevIndex uint64, timeout time.Duration) error
	RemoveServer(id string, prevIndex uint64, timeout time.Duration) error
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
	members, index, err := s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	req := membership.Request{ID: r.Id, RaftAddr: r.RaftAddress, APIAddr: r.ApiAddress}
	if c := caller.Of(ctx); c.Authenticated {
		req.Caller = c.Name
	}
	action, err := membership.CheckAdd(members, req)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	voter := false
	for _, m := range members {
		voter = voter || (m.ID == r.Id && m.Voter)
	}
	if action == membership.ChangeAddress {
		if err := s.node.Policy().CheckMove(members, r.Id, time.Now()); err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	err = s.upgrade.Admit(r.LogVersionMax, func() error {
		// Addresses first: once the member is in the Raft configuration,
		// it is listed and can lead, and then its API address must be known.
		if _, err := s.apply(ctx, fsm.TypeRegisterServer, fsm.RegisterServer{Server: state.Server{ID: r.Id, RaftAddr: r.RaftAddress, APIAddr: r.ApiAddress}}); err != nil {
			return err
		}
		switch {
		case action == membership.AddNonvoter, action == membership.ChangeAddress && !voter:
			// A new server never votes before it has caught up (the
			// leader's promoter decides), so it cannot cost the quorum.
			return s.node.AddNonvoter(r.Id, r.RaftAddress, index, timeoutOf(ctx))
		case action == membership.ChangeAddress:
			return s.node.AddVoter(r.Id, r.RaftAddress, index, timeoutOf(ctx))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if action != membership.Nothing {
		s.log.Info("server added", "server", r.Id, "raft", r.RaftAddress, "api", r.ApiAddress, "change", action.String())
	}
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
	members, index, err := s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.node.Policy().CheckRemove(members, r.Id, time.Now()); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := s.node.RemoveServer(r.Id, index, timeoutOf(ctx)); err != nil {
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

// members joins the Raft configuration (the truth about membership) with
// the registry's API addresses.
func (s *cluster) members() ([]membership.Member, uint64, error) {
	rm, index, err := s.node.Configuration()
	if err != nil {
		return nil, 0, err
	}
	apis := map[string]string{}
	for _, v := range s.store.Servers() {
		apis[v.ID] = v.APIAddr
	}
	out := make([]membership.Member, len(rm))
	for k, m := range rm {
		out[k] = membership.Member{ID: m.ID, RaftAddr: m.Address, APIAddr: apis[m.ID], Voter: m.Voter, LastContact: m.LastContact, LastIndex: m.LastIndex}
	}
	return out, index, nil
}

// servers lists the members and, on the leader, their catch-up state.
func (s *cluster) servers() ([]*pb.Server, string, error) {
	members, _, err := s.members()
	if err != nil {
		return nil, "", err
	}
	_, leader := s.node.Leader()
	var leaderLast uint64
	for _, m := range members {
		if m.ID == leader {
			leaderLast = m.LastIndex
		}
	}
	p, now := s.node.Policy(), time.Now()
	out := make([]*pb.Server, 0, len(members))
	for _, m := range members {
		suffrage := "nonvoter"
		if m.Voter {
			suffrage = "voter"
		}
		srv := &pb.Server{Id: m.ID, RaftAddress: m.RaftAddr, ApiAddress: m.APIAddr, Suffrage: suffrage, Leader: m.ID == leader}
		if !m.LastContact.IsZero() {
			srv.LastContact, srv.LastIndex = timestamppb.New(m.LastContact), m.LastIndex
			srv.Live, srv.CaughtUp = p.Live(m, now), p.CaughtUp(m, leaderLast, now)
		}
		out = append(out, srv)
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
