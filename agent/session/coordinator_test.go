package session_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// within bounds every wait in these tests; generous for -race on 2 cores.
const within = 15 * time.Second

// testCoordinator is an in-process AgentService: it accepts Register,
// assigns increasing epochs (across restarts on the same address, like the
// real coordinator's replicated host record) and exposes each session's
// messages on channels.
type testCoordinator struct {
	agentv1.UnimplementedAgentServiceServer
	t         testing.TB
	heartbeat time.Duration
	resync    time.Duration

	mu    sync.Mutex
	addr  string
	srv   *grpc.Server
	epoch uint64

	sessions chan *testSession
}

// testSession is one agent stream as the coordinator sees it.
type testSession struct {
	register *agentv1.Register
	epoch    uint64

	results    chan *agentv1.StepResult
	reports    chan *agentv1.StepReport
	events     chan *agentv1.DomainState
	resyncs    chan *agentv1.Inventory
	images     chan *agentv1.ImageReport
	heartbeats chan struct{}
	guests     chan *agentv1.GuestReport
	out        chan *agentv1.ConnectResponse
	ended      chan struct{} // closed when the agent's side of the stream ends
}

func newTestCoordinator(t testing.TB, heartbeat, resync time.Duration) *testCoordinator {
	c := &testCoordinator{t: t, heartbeat: heartbeat, resync: resync, sessions: make(chan *testSession, 16)}
	c.start("127.0.0.1:0")
	t.Cleanup(c.stop)
	return c
}

func (c *testCoordinator) start(addr string) {
	c.t.Helper()
	var lis net.Listener
	var err error
	// The old listener's port may take a moment to be free again.
	deadline := time.Now().Add(within)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // retry cadence, not a wait for a condition
	}
	if err != nil {
		c.t.Fatalf("listen %s: %v", addr, err)
	}
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: time.Second, PermitWithoutStream: true,
	}))
	agentv1.RegisterAgentServiceServer(srv, c)
	c.mu.Lock()
	c.addr, c.srv = lis.Addr().String(), srv
	c.mu.Unlock()
	go srv.Serve(lis)
}

// stop ends the server and every stream, as a coordinator crash would.
func (c *testCoordinator) stop() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// restart stops the server and serves again on the same address.
func (c *testCoordinator) restart() {
	c.stop()
	c.start(c.Addr())
}

func (c *testCoordinator) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

func (c *testCoordinator) Connect(stream grpc.BidiStreamingServer[agentv1.ConnectRequest, agentv1.ConnectResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return errors.New("first message is not Register")
	}
	c.mu.Lock()
	c.epoch++
	s := &testSession{
		register:   reg,
		epoch:      c.epoch,
		results:    make(chan *agentv1.StepResult, 1000),
		reports:    make(chan *agentv1.StepReport, 1000),
		events:     make(chan *agentv1.DomainState, 1000),
		resyncs:    make(chan *agentv1.Inventory, 1000),
		images:     make(chan *agentv1.ImageReport, 1000),
		heartbeats: make(chan struct{}, 1000),
		guests:     make(chan *agentv1.GuestReport, 1000),
		out:        make(chan *agentv1.ConnectResponse, 100),
		ended:      make(chan struct{}),
	}
	c.mu.Unlock()
	err = stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Registered{Registered: &agentv1.Registered{
		Epoch:             s.epoch,
		HeartbeatInterval: durationpb.New(c.heartbeat),
		ResyncInterval:    durationpb.New(c.resync),
	}}})
	if err != nil {
		return err
	}
	c.sessions <- s

	ctx := stream.Context()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-s.out:
				if stream.Send(m) != nil {
					return
				}
			}
		}
	}()
	defer close(s.ended)
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		switch msg := m.GetMsg().(type) {
		case *agentv1.ConnectRequest_StepResult:
			s.results <- msg.StepResult
		case *agentv1.ConnectRequest_StepReport:
			s.reports <- msg.StepReport
		case *agentv1.ConnectRequest_PowerEvent:
			s.events <- msg.PowerEvent
		case *agentv1.ConnectRequest_Resync:
			s.resyncs <- msg.Resync
		case *agentv1.ConnectRequest_Heartbeat:
			s.heartbeats <- struct{}{}
		case *agentv1.ConnectRequest_GuestReport:
			s.guests <- msg.GuestReport
		case *agentv1.ConnectRequest_ImageReport:
			select {
			case s.images <- msg.ImageReport:
			default: // a test that does not read them
			}
		default:
			return fmt.Errorf("unexpected message %T", msg)
		}
	}
}

// nextSession waits for the agent to register.
func (c *testCoordinator) nextSession(t testing.TB) *testSession {
	t.Helper()
	select {
	case s := <-c.sessions:
		return s
	case <-time.After(within):
		t.Fatal("the agent did not register")
		return nil
	}
}

func (s *testSession) send(step *agentv1.RunStep) {
	s.out <- &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_RunStep{RunStep: step}}
}

func (s *testSession) query(stepID, opID string) {
	s.out <- &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_QueryStep{QueryStep: &agentv1.QueryStep{StepId: stepID, OperationId: opID}}}
}

// report waits for the next step report.
func (s *testSession) report(t testing.TB) *agentv1.StepReport {
	t.Helper()
	select {
	case r := <-s.reports:
		return r
	case <-time.After(within):
		t.Fatal("no step report")
		return nil
	}
}

// result waits for the result of the operation, skipping others.
func (s *testSession) result(t testing.TB, opID string) *agentv1.StepResult {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case r := <-s.results:
			if r.GetOperationId() == opID {
				return r
			}
		case <-timeout:
			t.Fatalf("no result for operation %s", opID)
			return nil
		}
	}
}

// event waits for a power event matching ok.
func (s *testSession) event(t testing.TB, ok func(*agentv1.DomainState) bool) *agentv1.DomainState {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case e := <-s.events:
			if ok(e) {
				return e
			}
		case <-timeout:
			t.Fatal("no matching power event")
			return nil
		}
	}
}

// resync waits for a full inventory matching ok.
func (s *testSession) resync(t testing.TB, ok func(*agentv1.Inventory) bool) *agentv1.Inventory {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case inv := <-s.resyncs:
			if ok(inv) {
				return inv
			}
		case <-timeout:
			t.Fatal("no matching resync")
			return nil
		}
	}
}

func (s *testSession) waitEnded(t testing.TB) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(within):
		t.Fatal("the session did not end")
	}
}

// guest waits for a guest report matching ok.
func (s *testSession) guest(t testing.TB, ok func(*agentv1.GuestReport) bool) *agentv1.GuestReport {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case r := <-s.guests:
			if ok(r) {
				return r
			}
		case <-timeout:
			t.Fatal("no matching guest report")
			return nil
		}
	}
}
