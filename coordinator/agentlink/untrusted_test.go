package agentlink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// fsmLog applies proposals straight to an FSM: a leader of one.
type fsmLog struct {
	f   *fsm.FSM
	idx uint64
}

func (l *fsmLog) Apply(_ context.Context, b []byte) (any, error) {
	l.idx++
	r, _ := l.f.Apply(&raft.Log{Index: l.idx, Type: raft.LogCommand, Data: b}).(fsm.Result)
	return r.Value, r.Err
}
func (l *fsmLog) IsLeader() bool { return true }

// scripted is an agent's end of Connect that sends msgs, then waits.
type scripted struct {
	grpc.ServerStream
	ctx  context.Context
	msgs chan *agentv1.ConnectRequest
}

func (s *scripted) Context() context.Context { return s.ctx }
func (s *scripted) Send(*agentv1.ConnectResponse) error {
	return nil
}
func (s *scripted) Recv() (*agentv1.ConnectRequest, error) {
	select {
	case m := <-s.msgs:
		return m, nil
	case <-s.ctx.Done():
		return nil, io.EOF
	}
}

func register(host string, mod func(*agentv1.Register)) *agentv1.ConnectRequest {
	r := &agentv1.Register{HostId: host, HypervisorKind: "fake", AgentVersion: "test 1.0",
		Capacity: &pb.Resources{Vcpus: 8, MemoryMib: 8192, DiskGib: 100}}
	if mod != nil {
		mod(r)
	}
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Register{Register: r}}
}

func newLink(t *testing.T) (*Server, *state.Store) {
	store := state.New(0)
	log := slog.New(slog.DiscardHandler)
	return New(Config{Applier: &fsmLog{f: fsm.New(store, log)}, Logger: log, Store: store}), store
}

// A registration with a label flood, control characters or absurd
// capacity is refused before anything is recorded.
func TestRegisterRefusesUntrustedInput(t *testing.T) {
	flood := map[string]string{}
	for i := range 30000 {
		flood[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name string
		mod  func(*agentv1.Register)
	}{
		{"label flood", func(r *agentv1.Register) { r.Labels = flood }},
		{"long label value", func(r *agentv1.Register) { r.Labels = map[string]string{"k": strings.Repeat("v", 300)} }},
		{"escape in agent_version", func(r *agentv1.Register) { r.AgentVersion = "1.0\x1b[2J\x1b[Hhost list is empty" }},
		{"NUL in agent_version", func(r *agentv1.Register) { r.AgentVersion = "1.0\x00" }},
		{"newline in agent_version", func(r *agentv1.Register) { r.AgentVersion = "1.0\nfake-host READY" }},
		{"huge agent_version", func(r *agentv1.Register) { r.AgentVersion = strings.Repeat("v", 1<<16) }},
		{"bad kind", func(r *agentv1.Register) { r.HypervisorKind = "KVM\n" }},
		{"absurd memory", func(r *agentv1.Register) { r.Capacity.MemoryMib = 1 << 50 }},
		{"absurd vcpus", func(r *agentv1.Register) { r.Capacity.Vcpus = 1 << 30 }},
		{"bad peer address", func(r *agentv1.Register) { r.PeerAddress = "not an address" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, store := newLink(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st := &scripted{ctx: ctx, msgs: make(chan *agentv1.ConnectRequest, 1)}
			st.msgs <- register("h", c.mod)
			err := s.Connect(st)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if _, err := store.Host("h"); err == nil {
				t.Fatal("the host was recorded")
			}
		})
	}
}

// A power event stamped years ahead is taken as now: it does not hide the
// true events that follow it.
func TestFutureEventsClamped(t *testing.T) {
	s, store := newLink(t)
	now := time.Now()
	if err := store.Update(now, func(tx *state.Tx) error {
		tx.PutInstance(&state.Instance{ID: "i-1", Name: "web", HostID: "h", Power: lifecycle.PowerRunning, PowerTime: now.Add(-time.Minute)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &scripted{ctx: ctx, msgs: make(chan *agentv1.ConnectRequest, 4)}
	event := func(p pb.PowerState, at time.Time) *agentv1.ConnectRequest {
		return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_PowerEvent{PowerEvent: &agentv1.DomainState{
			InstanceId: "i-1", State: p, ObservedAt: timestamppb.New(at)}}}
	}
	st.msgs <- register("h", func(r *agentv1.Register) {
		r.Inventory = []*agentv1.DomainState{{InstanceId: "i-1", State: pb.PowerState_POWER_STATE_RUNNING, ObservedAt: timestamppb.New(now)}}
	})
	st.msgs <- event(pb.PowerState_POWER_STATE_SHUT_OFF, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	go s.Connect(st)
	testenv.Eventually(t, 10*time.Second, "the shut-off to be recorded, not in the future", func() bool {
		i, err := store.Instance("i-1")
		return err == nil && i.Power == lifecycle.PowerShutOff && i.PowerTime.Before(time.Now().Add(maxSkew))
	})
	st.msgs <- event(pb.PowerState_POWER_STATE_RUNNING, time.Now().Add(time.Second))
	testenv.Eventually(t, 10*time.Second, "the later true event to be recorded", func() bool {
		i, err := store.Instance("i-1")
		return err == nil && i.Power == lifecycle.PowerRunning
	})
}
