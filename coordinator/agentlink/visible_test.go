package agentlink

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Each agent event is told to EventVisible once applied, with the time
// since the agent stamped it; a heartbeat is no event.
func TestEventVisible(t *testing.T) {
	store := state.New(0)
	log := slog.New(slog.DiscardHandler)
	var mu sync.Mutex
	seen := map[string][]time.Duration{}
	s := New(Config{Applier: &fsmLog{f: fsm.New(store, log)}, Logger: log, Store: store,
		EventVisible: func(kind string, d time.Duration) { mu.Lock(); seen[kind] = append(seen[kind], d); mu.Unlock() }})
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
	st.msgs <- register("h", nil)
	st.msgs <- heartbeat(time.Now())
	st.msgs <- &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_PowerEvent{PowerEvent: &agentv1.DomainState{
		InstanceId: "i-1", State: pb.PowerState_POWER_STATE_SHUT_OFF, ObservedAt: timestamppb.New(time.Now().Add(-200 * time.Millisecond))}}}
	go s.Connect(st)
	testenv.Eventually(t, 10*time.Second, "the power event told", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen["power"]) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if d := seen["power"][0]; d < 200*time.Millisecond || d > 10*time.Second {
		t.Fatalf("power event visible after %v, want at least the 200 ms it was stamped before", d)
	}
	if len(seen) != 1 {
		t.Fatalf("events told: %v", seen)
	}
}
