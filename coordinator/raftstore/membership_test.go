package raftstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/membership"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

func member(t *testing.T, s *Store, id string) (Member, bool) {
	t.Helper()
	ms, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// The leader hears every server over Raft: a real non-voter is live with
// its last index, a made-up one at an address where nothing answers is
// never heard from. Then, with the follower gone for good, the leader's
// data dir is recovered as a one-voter cluster, at another Raft address,
// with every command it had.
func TestContactAndRecoverSingleNode(t *testing.T) {
	dir1 := t.TempDir()
	store1 := state.New(0)
	cfg1 := Config{NodeID: "n1", DataDir: dir1, BindAddr: freeAddr(t), Bootstrap: true, FastTimeouts: true}
	s1, err := Open(cfg1, fsm.New(store1, nil))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "n1 to lead", s1.IsLeader)
	s2, err := Open(Config{NodeID: "n2", DataDir: t.TempDir(), BindAddr: freeAddr(t), FastTimeouts: true}, fsm.New(state.New(0), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_, index, _ := s1.Configuration()
	if err := s1.AddNonvoter("n2", string(s2.transport.LocalAddr()), index, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s1.AddNonvoter("ghost", freeAddr(t), 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 20
	for k := range n {
		if _, err := s1.Apply(ctx, create(t, fmt.Sprintf("i-%d", k))); err != nil {
			t.Fatal(err)
		}
	}
	last, _, _ := s1.Indexes()
	testenv.Eventually(t, 20*time.Second, "n2 to be heard at the leader's last index", func() bool {
		m, _ := member(t, s1, "n2")
		return !m.Voter && !m.LastContact.IsZero() && m.LastIndex >= last
	})
	if g, ok := member(t, s1, "ghost"); !ok || !g.LastContact.IsZero() || g.LastIndex != 0 {
		t.Fatalf("the made-up server: %+v (listed %v)", g, ok)
	}
	if self, _ := member(t, s1, "n1"); !self.Voter || self.LastIndex < last || !s1.Policy().Live(membership.Member{LastContact: self.LastContact}, time.Now()) {
		t.Fatalf("the leader itself: %+v", self)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	if err := RecoverSingleNode(Config{NodeID: "n9", DataDir: t.TempDir(), BindAddr: freeAddr(t)}, fsm.New(state.New(0), nil)); err == nil {
		t.Fatal("an empty data dir was recovered")
	}
	cfg1.BindAddr, cfg1.Bootstrap = freeAddr(t), false
	if err := RecoverSingleNode(cfg1, fsm.New(state.New(0), nil)); err != nil {
		t.Fatal(err)
	}
	store := state.New(0)
	s, err := Open(cfg1, fsm.New(store, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testenv.Eventually(t, 20*time.Second, "the recovered n1 to lead", s.IsLeader)
	ms, err := s.Members()
	if err != nil || len(ms) != 1 || ms[0].ID != "n1" || !ms[0].Voter || ms[0].Address != cfg1.BindAddr {
		t.Fatalf("members after recovery: %+v %v", ms, err)
	}
	if err := s.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range n {
		if _, err := store.Instance(fmt.Sprintf("i-%d", k)); err != nil {
			t.Errorf("instance %d lost: %v", k, err)
		}
	}
	if _, err := s.Apply(ctx, create(t, "after")); err != nil {
		t.Fatalf("a write after recovery: %v", err)
	}
}
