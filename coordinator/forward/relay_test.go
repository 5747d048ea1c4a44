package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// fakeLeader says who leads: this server, or the one at addr; once then
// is set, every look-up after the next one answers then (a stale view
// that an election corrects).
type fakeLeader struct {
	leads   atomic.Bool
	addr    atomic.Value // string
	then    atomic.Value // string
	lookups atomic.Int64
}

func (l *fakeLeader) IsLeader() bool { return l.leads.Load() }
func (l *fakeLeader) LeaderAPIAddr() (string, bool) {
	a, _ := l.addr.Load().(string)
	if t, _ := l.then.Load().(string); t != "" && l.lookups.Add(1) > 1 {
		a = t
	}
	return a, a != ""
}

// instances answers creates with an operation naming the request and
// this server; a request named "refuse" fails with details.
type instances struct {
	pb.UnimplementedInstanceServiceServer
	name  string
	calls atomic.Int64

	deadline atomic.Value // time.Time: the deadline of the last "deadline" request

	// caller is who the last create came from, as caller.Of says.
	caller atomic.Pointer[state.Caller]

	// Requests named "block" wait for release to be closed.
	release       chan struct{}
	running, peak atomic.Int64
	entered       chan struct{}
}

func (s *instances) CreateInstance(ctx context.Context, r *pb.CreateInstanceRequest) (*pb.Operation, error) {
	s.calls.Add(1)
	s.caller.Store(caller.Of(ctx))
	if r.Name == "block" {
		n := s.running.Add(1)
		defer s.running.Add(-1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		s.entered <- struct{}{}
		<-s.release
	}
	if r.Name == "refuse" {
		st, _ := status.New(codes.FailedPrecondition, "no").WithDetails(&errdetails.ErrorInfo{Reason: "NOPE"})
		return nil, st.Err()
	}
	if r.Name == "deadline" {
		d, ok := ctx.Deadline()
		if !ok {
			return nil, status.Error(codes.Internal, "no deadline came with the request")
		}
		s.deadline.Store(d)
	}
	return &pb.Operation{Id: s.name + "/" + r.Name, InstanceId: r.RequestId}, nil
}

type server struct {
	addr  string
	leads *fakeLeader
	impl  *instances
	fwd   *Forwarder
}

func startServer(t testing.TB, name string) *server {
	return startServerWith(t, name, serverConfig{})
}

// serverConfig varies a test server: its server options, the unary
// interceptors it gives ServerOption, the options it dials the leader
// with, and a change to its forwarder before it serves.
type serverConfig struct {
	opts         []grpc.ServerOption
	interceptors []grpc.UnaryServerInterceptor
	dial         []grpc.DialOption
	setup        func(*Forwarder)
	// decodeReplies leaves out ServerCodec, which coordinators install:
	// the follower then decodes each relayed reply.
	decodeReplies bool
}

func startServerWith(t testing.TB, name string, cfg serverConfig) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: lis.Addr().String(), leads: &fakeLeader{}, impl: &instances{name: name}}
	s.fwd, err = New(s.leads, []string{pb.InstanceService_CreateInstance_FullMethodName}, 2*time.Second, slog.Default(), cfg.dial...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.setup != nil {
		cfg.setup(s.fwd)
	}
	opts := append([]grpc.ServerOption{s.fwd.ServerOption(cfg.interceptors...)}, cfg.opts...)
	if !cfg.decodeReplies {
		opts = append(opts, s.fwd.ServerCodec())
	}
	gs := grpc.NewServer(opts...)
	pb.RegisterInstanceServiceServer(s.fwd.Registrar(gs), s.impl)
	s.fwd.RegisterRelay(gs)
	go gs.Serve(lis)
	t.Cleanup(func() { gs.Stop(); s.fwd.Close() })
	return s
}

func client(t testing.TB, addr string) pb.InstanceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewInstanceServiceClient(conn)
}

func TestRelayedWritesRunOnTheLeader(t *testing.T) {
	for _, decode := range []bool{false, true} {
		t.Run(fmt.Sprint("decodeReplies=", decode), func(t *testing.T) { testRelayedWrites(t, decode) })
	}
}

// testRelayedWrites: the follower passes the leader's encoded replies
// through, or decodes them (decodeReplies); the client sees the same.
func testRelayedWrites(t *testing.T, decodeReplies bool) {
	cfg := serverConfig{decodeReplies: decodeReplies}
	leader, follower := startServerWith(t, "leader", cfg), startServerWith(t, "follower", cfg)
	leader.leads.leads.Store(true)
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := context.Background()

	// Many concurrent writes share the relay stream; each gets its own answer.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("w", i)
			op, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: name, RequestId: name})
			if err != nil {
				errs <- err
			} else if op.Id != "leader/"+name || op.InstanceId != name {
				errs <- fmt.Errorf("%s got %v", name, op)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := follower.impl.calls.Load(); n != 0 {
		t.Fatalf("the follower ran %d writes itself", n)
	}
	follower.fwd.mu.Lock()
	relays := len(follower.fwd.relays)
	follower.fwd.mu.Unlock()
	if relays != 1 {
		t.Fatalf("%d relays open, want 1", relays)
	}

	// The leader's error comes back unchanged, details included.
	_, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "refuse"})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 || st.Details()[0].(*errdetails.ErrorInfo).Reason != "NOPE" {
		t.Fatalf("refusal came back as %v %v", st, st.Details())
	}
	// The caller's deadline goes with the request.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.CreateInstance(dctx, &pb.CreateInstanceRequest{Name: "deadline"}); err != nil {
		t.Fatal(err)
	}
}

// A relayed write that reaches a server no longer leading is refused
// there, and the follower asks the new leader.
func TestRelayFollowsANewLeader(t *testing.T) {
	a, b, follower := startServer(t, "a"), startServer(t, "b"), startServer(t, "follower")
	a.leads.leads.Store(true)
	follower.leads.addr.Store(a.addr)
	cl := client(t, follower.addr)
	ctx := context.Background()
	if op, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "one"}); err != nil || op.Id != "a/one" {
		t.Fatalf("first write: %v %v", op, err)
	}
	// a steps down and b leads; the follower still believes in a at first.
	a.leads.leads.Store(false)
	b.leads.leads.Store(true)
	follower.leads.then.Store(b.addr)
	op, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "two"})
	if err != nil || op.Id != "b/two" {
		t.Fatalf("write after the change: %v %v", op, err)
	}
	if n := a.impl.calls.Load(); n != 1 {
		t.Fatalf("the old leader ran %d writes, want 1", n)
	}
}

// A leader that serves no relay stream is forwarded to with
// one unary call per write.
func TestRelayFallsBackToUnary(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &instances{name: "old"}
	gs := grpc.NewServer()
	pb.RegisterInstanceServiceServer(gs, impl)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	follower := startServer(t, "follower")
	follower.leads.addr.Store(lis.Addr().String())
	cl := client(t, follower.addr)
	for i := range 3 {
		op, err := cl.CreateInstance(context.Background(), &pb.CreateInstanceRequest{Name: fmt.Sprint(i)})
		if err != nil || op.Id != fmt.Sprint("old/", i) {
			t.Fatalf("write %d: %v %v", i, op, err)
		}
	}
}
