package agentlink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// epochs is a leader's log that numbers what it is given: a registration's
// number is its session's epoch.
type epochs struct {
	mu sync.Mutex
	n  uint64
}

func (e *epochs) Apply(context.Context, []byte) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	return e.n, nil
}
func (e *epochs) IsLeader() bool { return true }

// agentStream is one agent's end of Connect. It registers, then sends
// nothing more. With delivered nil it never reads the steps it is sent (its
// Send blocks, as gRPC's does once the flow-control window is full).
type agentStream struct {
	grpc.ServerStream // nil: Connect uses only what is below
	ctx               context.Context
	hostID            string
	registered        atomic.Bool
	delivered         chan *agentv1.ConnectResponse
	blocked           chan struct{} // closed when a Send first blocks (delivered nil)
	blockOnce         sync.Once
}

func newAgentStream(ctx context.Context, hostID string, reads bool) *agentStream {
	a := &agentStream{ctx: ctx, hostID: hostID, blocked: make(chan struct{})}
	if reads {
		a.delivered = make(chan *agentv1.ConnectResponse, 16)
	}
	return a
}

func (a *agentStream) Context() context.Context { return a.ctx }

func (a *agentStream) Recv() (*agentv1.ConnectRequest, error) {
	if !a.registered.Swap(true) {
		return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Register{Register: &agentv1.Register{HostId: a.hostID}}}, nil
	}
	<-a.ctx.Done()
	return nil, a.ctx.Err()
}

func (a *agentStream) Send(m *agentv1.ConnectResponse) error {
	if m.GetRegistered() != nil {
		return nil
	}
	if a.delivered == nil {
		a.blockOnce.Do(func() { close(a.blocked) })
		<-a.ctx.Done()
		return a.ctx.Err()
	}
	select {
	case a.delivered <- m:
		return nil
	case <-a.ctx.Done():
		return a.ctx.Err()
	}
}

// connect serves the agent's session; the returned channel gets Connect's
// error. Like gRPC, it ends the stream's context when Connect returns.
func connect(t *testing.T, s *Server, hostID string, reads bool) (*agentStream, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := newAgentStream(ctx, hostID, reads)
	done := make(chan error, 1)
	go func() {
		done <- s.Connect(a)
		cancel()
	}()
	t.Cleanup(cancel)
	return a, done
}

const bound = 10 * time.Second // a failure bound, not synchronisation

func waitFor(t *testing.T, s *Server, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(bound)
	for {
		changed := s.Changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func live(s *Server, hosts ...string) func() bool {
	return func() bool {
		for _, h := range hosts {
			if _, ok := s.Epoch(h); !ok {
				return false
			}
		}
		return true
	}
}

// TestStuckAgentDoesNotHoldUpOthers: host a's agent never reads its stream.
// Sending to it never blocks: once its queue is full it refuses with
// ErrQueueFull (the step stays with the caller), while host b's steps are
// delivered at once. The liveness watch then ends a's session, so its agent
// reconnects and what it was sent is asked about again.
func TestStuckAgentDoesNotHoldUpOthers(t *testing.T) {
	const queue = 4
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	s := New(Config{Applier: &epochs{}, SendQueue: queue, Now: now})

	a, aDone := connect(t, s, "a", false)
	b, _ := connect(t, s, "b", true)
	waitFor(t, s, "both sessions", live(s, "a", "b"))

	// One more than the stream can hold (one message in its blocked Send,
	// the queue full behind it), so at least the last is refused.
	sent := make(chan []error, 1)
	go func() {
		var errs []error
		for i := range queue + 2 {
			errs = append(errs, s.Send("a", &agentv1.RunStep{StepId: fmt.Sprintf("a-%d", i)}))
		}
		errs = append(errs, s.Send("b", &agentv1.RunStep{StepId: "b-0"}))
		sent <- errs
	}()
	var errs []error
	select {
	case errs = <-sent:
	case <-time.After(bound):
		t.Fatal("Send blocked on a host whose agent does not read")
	}
	// Which of a's sends are refused depends on when the session's writer
	// takes the first one into its blocked Send; at least one is.
	refused := 0
	for i, err := range errs[:queue+2] {
		switch {
		case errors.Is(err, ErrQueueFull):
			refused++
		case err != nil:
			t.Fatalf("send %d to a: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatalf("%d sends to a stuck agent with a queue of %d: none refused", queue+2, queue)
	}
	if err := errs[queue+2]; err != nil {
		t.Fatalf("send to b: %v", err)
	}
	select {
	case m := <-b.delivered:
		if got := m.GetRunStep().GetStepId(); got != "b-0" {
			t.Fatalf("b got step %q, want b-0", got)
		}
	case <-time.After(bound):
		t.Fatal("b's step was not delivered while a's agent was stuck")
	}

	// a's stream has been blocked past the limit: the watch ends its session.
	select {
	case <-a.blocked:
	case <-time.After(bound):
		t.Fatal("a's stream was never written to")
	}
	const limit = 6 * time.Second
	clock.Add(int64(limit + time.Second))
	s.reapStuck(now(), limit)
	select {
	case <-aDone:
	case <-time.After(bound):
		t.Fatal("a's stuck session was not ended")
	}
	if _, ok := s.Epoch("a"); ok {
		t.Fatal("a still has a session")
	}
	if err := s.Send("a", &agentv1.RunStep{StepId: "a-late"}); !errors.Is(err, ErrNoSession) {
		t.Fatalf("send to a after its session ended: %v, want ErrNoSession", err)
	}
	if !live(s, "b")() {
		t.Fatal("b's session ended with a's")
	}
}

// TestReapStuckSparesWorkingStreams: only a write that has not finished
// within the limit ends a session; an idle stream or a recent write does not.
func TestReapStuckSparesWorkingStreams(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const limit = 6 * time.Second
	for _, tc := range []struct {
		name      string
		sending   time.Time
		wantEnded bool
	}{
		{"idle", time.Time{}, false},
		{"writing within the limit", t0.Add(-limit), false},
		{"writing past the limit", t0.Add(-limit - time.Millisecond), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Applier: &epochs{}})
			ss := &session{hostID: "h", epoch: 1, out: make(chan *agentv1.ConnectResponse, 1), done: make(chan struct{}), sendingSince: tc.sending}
			s.sessions["h"] = ss
			s.reapStuck(t0, limit)
			_, live := s.Epoch("h")
			if live == tc.wantEnded || ss.stuck != tc.wantEnded {
				t.Fatalf("live %v stuck %v, want ended %v", live, ss.stuck, tc.wantEnded)
			}
		})
	}
}
