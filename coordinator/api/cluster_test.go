package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/membership"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// raftConfig is a leader's Raft configuration in memory: c1 leads, and
// each member answers (or not) as the test says.
type raftConfig struct {
	members []raftstore.Member
	index   uint64
}

func (r *raftConfig) ID() string                { return "c1" }
func (r *raftConfig) State() string             { return "Leader" }
func (r *raftConfig) Leader() (string, string)  { return "c1:7000", "c1" }
func (r *raftConfig) Snapshot() (uint64, error) { return 0, nil }
func (r *raftConfig) Stats() map[string]string  { return nil }
func (r *raftConfig) LogVersion() uint32        { return fsm.SupportedLogVersion }
func (r *raftConfig) Policy() membership.Policy {
	return membership.Policy{LiveWithin: time.Second, MaxLag: 100, StableFor: time.Second}
}
func (r *raftConfig) Members() ([]raftstore.Member, error) { return r.members, nil }
func (r *raftConfig) Configuration() ([]raftstore.Member, uint64, error) {
	return append([]raftstore.Member(nil), r.members...), r.index, nil
}

func (r *raftConfig) set(id, addr string, voter bool, prev uint64) error {
	if prev != r.index {
		return raftstore.ErrConfigurationChanged
	}
	r.index++
	for k := range r.members {
		if r.members[k].ID == id {
			r.members[k].Address, r.members[k].Voter = addr, voter
			return nil
		}
	}
	r.members = append(r.members, raftstore.Member{ID: id, Address: addr, Voter: voter})
	return nil
}

func (r *raftConfig) AddVoter(id, addr string, prev uint64, _ time.Duration) error {
	return r.set(id, addr, true, prev)
}

func (r *raftConfig) AddNonvoter(id, addr string, prev uint64, _ time.Duration) error {
	return r.set(id, addr, false, prev)
}

func (r *raftConfig) RemoveServer(id string, prev uint64, _ time.Duration) error {
	if prev != r.index {
		return raftstore.ErrConfigurationChanged
	}
	r.index++
	for k := range r.members {
		if r.members[k].ID == id {
			r.members = append(r.members[:k], r.members[k+1:]...)
			break
		}
	}
	return nil
}

type admitAll struct{}

func (admitAll) Admit(_ uint32, add func() error) error { return add() }
func (admitAll) Supported() uint32                      { return fsm.SupportedLogVersion }

// threeServers is a cluster of c1 (leading), c2 and c3, all voters, all
// registered; dead names those the leader has not heard from for a minute.
func threeServers(t *testing.T, dead ...string) (*cluster, *raftConfig, *state.Store) {
	s := state.New(0)
	l := &local{f: fsm.New(s, nil)}
	rc := &raftConfig{index: 7}
	now := time.Now()
	for _, id := range []string{"c1", "c2", "c3"} {
		m := raftstore.Member{ID: id, Address: id + ":7000", Voter: true, Peer: raftstore.Peer{LastContact: now, LastIndex: 50}}
		for _, d := range dead {
			if d == id {
				m.LastContact = now.Add(-time.Minute)
			}
		}
		rc.members = append(rc.members, m)
		if _, err := fsm.Propose(context.Background(), l, fsm.TypeRegisterServer, now, fsm.RegisterServer{Server: state.Server{ID: id, RaftAddr: id + ":7000", APIAddr: id + ":7443"}}); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{core: newCore(Config{Store: s, Applier: l, Logger: slog.Default()}), node: rc, upgrade: admitAll{}}
	return c, rc, s
}

// as is a call from a client whose verified certificate names name (an
// empty name: a plaintext call).
func as(name string) context.Context {
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}
	if name != "" {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: name, OrganizationalUnit: []string{"coordinator"}}}
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	}
	return peer.NewContext(context.Background(), p)
}

func TestAddServerRules(t *testing.T) {
	for _, c := range []struct {
		name   string
		caller string
		dead   []string
		req    *pb.AddServerRequest
		code   codes.Code
		// after: c2's Raft address and suffrage, and the new server's suffrage ("" absent)
		c2Addr string
		c2Vote bool
		c4     string
	}{
		{"a new server joins as a non-voter", "", nil, &pb.AddServerRequest{Id: "c4", RaftAddress: "c4:7000", ApiAddress: "c4:7443"}, codes.OK, "c2:7000", true, "nonvoter"},
		{"a member again, same addresses", "", nil, &pb.AddServerRequest{Id: "c2", RaftAddress: "c2:7000", ApiAddress: "c2:7443"}, codes.OK, "c2:7000", true, ""},
		{"plaintext: a member's addresses never change", "", nil, &pb.AddServerRequest{Id: "c2", RaftAddress: "x:7000", ApiAddress: "x:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
		{"another member's certificate may not move it", "c3", nil, &pb.AddServerRequest{Id: "c2", RaftAddress: "x:7000", ApiAddress: "x:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
		{"an operator's certificate may not move it", "alice", nil, &pb.AddServerRequest{Id: "c2", RaftAddress: "x:7000", ApiAddress: "x:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
		{"the member moves itself and stays a voter", "c2", nil, &pb.AddServerRequest{Id: "c2", RaftAddress: "x:7000", ApiAddress: "x:7443"}, codes.OK, "x:7000", true, ""},
		{"its move would lose the quorum", "c2", []string{"c3"}, &pb.AddServerRequest{Id: "c2", RaftAddress: "x:7000", ApiAddress: "x:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
		{"a new id on the leader's Raft address", "", nil, &pb.AddServerRequest{Id: "c4", RaftAddress: "c1:7000", ApiAddress: "c4:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
		{"a new id on the leader's API address", "", nil, &pb.AddServerRequest{Id: "c4", RaftAddress: "c4:7000", ApiAddress: "c1:7443"}, codes.FailedPrecondition, "c2:7000", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, rc, store := threeServers(t, c.dead...)
			_, err := cl.AddServer(as(c.caller), c.req)
			if status.Code(err) != c.code {
				t.Fatalf("AddServer: %v, want %v", err, c.code)
			}
			got := map[string]raftstore.Member{}
			for _, m := range rc.members {
				got[m.ID] = m
			}
			if got["c2"].Address != c.c2Addr || got["c2"].Voter != c.c2Vote {
				t.Errorf("c2 after: %+v", got["c2"])
			}
			c4, ok := got["c4"]
			if (c.c4 == "") == ok || (ok && c4.Voter != (c.c4 == "voter")) {
				t.Errorf("c4 after: %+v (present %v), want %q", c4, ok, c.c4)
			}
			// A refused change registers no address either.
			if c.code != codes.OK {
				for _, s := range store.Servers() {
					if s.RaftAddr == "x:7000" || s.ID == "c4" {
						t.Errorf("a refused change registered %+v", s)
					}
				}
			}
		})
	}
}

func TestRemoveServerRules(t *testing.T) {
	for _, c := range []struct {
		name   string
		dead   []string
		remove string
		code   codes.Code
	}{
		{"a follower of a healthy three", nil, "c3", codes.OK},
		{"the dead one of three", []string{"c3"}, "c3", codes.OK},
		{"a live one while another is dead", []string{"c3"}, "c2", codes.FailedPrecondition},
		{"the leader while another is dead", []string{"c3"}, "c1", codes.FailedPrecondition},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, rc, _ := threeServers(t, c.dead...)
			_, err := cl.RemoveServer(as(""), &pb.RemoveServerRequest{Id: c.remove})
			if status.Code(err) != c.code {
				t.Fatalf("RemoveServer: %v, want %v", err, c.code)
			}
			if want := 3 - map[bool]int{true: 1}[c.code == codes.OK]; len(rc.members) != want {
				t.Fatalf("%d members after, want %d", len(rc.members), want)
			}
		})
	}
}
