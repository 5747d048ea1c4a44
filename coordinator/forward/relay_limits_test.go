package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	clusterv1 "github.com/flotilla-vm/flotilla/proto/flotilla/cluster/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// testCtx bounds a test that would otherwise hang on a regression.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawRelay opens a relay stream to addr by hand, as a follower (or anyone)
// could.
func rawRelay(t *testing.T, ctx context.Context, addr string, dial ...grpc.DialOption) clusterv1.RelayService_RelayClient {
	t.Helper()
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := clusterv1.NewRelayServiceClient(conn).Relay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// relayOne sends c on stream and returns its reply, or the stream's error.
func relayOne(stream clusterv1.RelayService_RelayClient, c *clusterv1.RelayCall) (proto.Message, error) {
	// A stream the server already ended fails Send with io.EOF; its
	// status is what Recv returns.
	if err := stream.Send(&clusterv1.RelayRequest{Calls: []*clusterv1.RelayCall{c}}); err != nil && err != io.EOF {
		return nil, err
	}
	in, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if len(in.Replies) != 1 || in.Replies[0].Id != c.Id {
		return nil, fmt.Errorf("replies %v to call %d", in.Replies, c.Id)
	}
	rep := in.Replies[0]
	if rep.Status != nil {
		return nil, statusError(rep.Status)
	}
	op := new(pb.Operation)
	return op, proto.Unmarshal(rep.Payload, op)
}

func createRequest(t *testing.T, name string) []byte {
	b, err := proto.Marshal(&pb.CreateInstanceRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The deadline travels as the time left: the leader counts it from when it
// received the request, whatever its clock says of the follower's.
func TestRelayDeadlineIsTimeLeft(t *testing.T) {
	leader := startServer(t, "leader")
	leader.leads.leads.Store(true)
	ctx := testCtx(t)
	// The stream's own context has no deadline: the request's is the one.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := rawRelay(t, sctx, leader.addr)
	const left = 10 * time.Second
	before := time.Now()
	if _, err := relayOne(stream, &clusterv1.RelayCall{Id: 1, Method: pb.InstanceService_CreateInstance_FullMethodName, Timeout: durationpb.New(left), Payload: createRequest(t, "deadline")}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	d := leader.impl.deadline.Load().(time.Time)
	if d.Before(before.Add(left)) || d.After(after.Add(left)) {
		t.Fatalf("deadline %v, want within [%v, %v]", d, before.Add(left), after.Add(left))
	}

	// Through a follower: the leader's deadline is the caller's, give or
	// take the time in flight.
	follower := startServer(t, "follower")
	follower.leads.addr.Store(leader.addr)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	want, _ := cctx.Deadline()
	if _, err := client(t, follower.addr).CreateInstance(cctx, &pb.CreateInstanceRequest{Name: "deadline"}); err != nil {
		t.Fatal(err)
	}
	d = leader.impl.deadline.Load().(time.Time)
	if diff := d.Sub(want); diff < -time.Second || diff > time.Second {
		t.Fatalf("the leader's deadline is %v off the caller's", diff)
	}
}

// recorder is a unary interceptor that notes what it saw, and refuses
// requests whose metadata says tenant=evil.
type recorder struct {
	mu   sync.Mutex
	seen []seenCall
}

type seenCall struct {
	method, grpcMethod string
	relayed            bool
	md                 metadata.MD
}

func (r *recorder) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	gm, _ := grpc.Method(ctx)
	_, relayed := grpc.ServerTransportStreamFromContext(ctx).(relayedCall)
	r.mu.Lock()
	r.seen = append(r.seen, seenCall{method: info.FullMethod, grpcMethod: gm, relayed: relayed, md: md})
	r.mu.Unlock()
	if joined(md.Get("tenant")) == "evil" {
		return nil, status.Error(codes.PermissionDenied, "evil tenant")
	}
	return h(ctx, req)
}

func (r *recorder) last() seenCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[len(r.seen)-1]
}

func joined(v []string) string { return strings.Join(v, ",") }

// Relayed writes run through the leader's interceptors, with the client's
// metadata (gRPC's own and hop-by-hop keys left out).
func TestRelayRunsInterceptorsWithClientMetadata(t *testing.T) {
	rec := &recorder{}
	leader := startServerWith(t, "leader", serverConfig{interceptors: []grpc.UnaryServerInterceptor{rec.intercept}})
	leader.leads.leads.Store(true)
	follower := startServer(t, "follower")
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "tenant", "acme", "trace-bin", string([]byte{0, 1, 2}))
	if _, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	c := rec.last()
	if !c.relayed || c.method != pb.InstanceService_CreateInstance_FullMethodName || c.grpcMethod != c.method {
		t.Fatalf("interceptor saw %+v", c)
	}
	if joined(c.md.Get("tenant")) != "acme" || !bytes.Equal([]byte(joined(c.md.Get("trace-bin"))), []byte{0, 1, 2}) || joined(c.md.Get(forwardedKey)) != "1" {
		t.Fatalf("metadata on the leader: %v", c.md)
	}
	for k := range c.md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "user-agent" || k == "content-type" {
			t.Fatalf("reserved key %s relayed: %v", k, c.md)
		}
	}
	// The interceptor's refusal comes back, and the handler never ran.
	calls := leader.impl.calls.Load()
	_, err := cl.CreateInstance(metadata.AppendToOutgoingContext(testCtx(t), "tenant", "evil"), &pb.CreateInstanceRequest{Name: "b"})
	if status.Code(err) != codes.PermissionDenied || !rec.last().relayed {
		t.Fatalf("evil tenant: %v", err)
	}
	if leader.impl.calls.Load() != calls {
		t.Fatal("the handler ran despite the interceptor's refusal")
	}
	if n := leader.impl.calls.Load(); n != 1 {
		t.Fatalf("leader ran %d creates, want 1", n)
	}
}

// A request too large for a relay message goes by a unary call instead.
func TestRelayLargeRequestGoesUnary(t *testing.T) {
	rec := &recorder{}
	leader := startServerWith(t, "leader", serverConfig{interceptors: []grpc.UnaryServerInterceptor{rec.intercept}})
	leader.leads.leads.Store(true)
	follower := startServer(t, "follower")
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "tenant", "acme")
	big := strings.Repeat("x", relayBatchMax+1)
	if _, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: big}); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); c.relayed || c.method != pb.InstanceService_CreateInstance_FullMethodName || joined(c.md.Get("tenant")) != "acme" || joined(c.md.Get(forwardedKey)) != "1" {
		t.Fatalf("large request: %+v", c)
	}
	// A small one after it is relayed.
	if _, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "small"}); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); !c.relayed {
		t.Fatalf("small request: %+v", c)
	}
}

// Only write methods are relayed: reads are refused per request, and the
// registrar does not keep them.
func TestRelayRefusesReads(t *testing.T) {
	leader := startServer(t, "leader")
	leader.leads.leads.Store(true)
	stream := rawRelay(t, testCtx(t), leader.addr)
	req, _ := proto.Marshal(&pb.GetInstanceRequest{Id: "x"})
	for _, m := range []string{pb.InstanceService_GetInstance_FullMethodName, pb.InstanceService_ListInstances_FullMethodName, "/grpc.health.v1.Health/Check"} {
		_, err := relayOne(stream, &clusterv1.RelayCall{Id: 1, Method: m, Payload: req})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s relayed: %v", m, err)
		}
	}
	// The stream still serves writes.
	if _, err := relayOne(stream, &clusterv1.RelayCall{Id: 2, Method: pb.InstanceService_CreateInstance_FullMethodName, Payload: createRequest(t, "w")}); err != nil {
		t.Fatal(err)
	}
	leader.fwd.hmu.RLock()
	defer leader.fwd.hmu.RUnlock()
	for m := range leader.fwd.handlers {
		if m != pb.InstanceService_CreateInstance_FullMethodName {
			t.Fatalf("registrar kept %s", m)
		}
	}
}

// With mutual TLS only coordinators may open the relay.
func TestRelayMutualTLSCoordinatorsOnly(t *testing.T) {
	ca, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := func(name, role string) (grpc.ServerOption, grpc.DialOption) {
		f, err := ca.Issue(name, role)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := mtls.Server(f)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := mtls.Client(f)
		if err != nil {
			t.Fatal(err)
		}
		return grpc.Creds(credentials.NewTLS(srv)), grpc.WithTransportCredentials(credentials.NewTLS(cli))
	}
	leaderSrv, _ := creds("c1", mtls.RoleCoordinator)
	_, followerDial := creds("c2", mtls.RoleCoordinator)
	_, operatorDial := creds("alice", "operator")
	_, agentDial := creds("host1", mtls.RoleAgent)
	leader := startServerWith(t, "leader", serverConfig{opts: []grpc.ServerOption{leaderSrv}})
	leader.leads.leads.Store(true)

	for _, dial := range []grpc.DialOption{operatorDial, agentDial} {
		stream := rawRelay(t, testCtx(t), leader.addr, dial)
		_, err := relayOne(stream, &clusterv1.RelayCall{Id: 1, Method: pb.InstanceService_CreateInstance_FullMethodName, Payload: createRequest(t, "sneak")})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a non-coordinator's relay: %v", err)
		}
	}
	if n := leader.impl.calls.Load(); n != 0 {
		t.Fatalf("the leader ran %d relayed writes from non-coordinators", n)
	}

	follower := startServerWith(t, "follower", serverConfig{dial: []grpc.DialOption{followerDial}})
	follower.leads.addr.Store(leader.addr)
	op, err := client(t, follower.addr).CreateInstance(testCtx(t), &pb.CreateInstanceRequest{Name: "ok"})
	if err != nil || op.Id != "leader/ok" {
		t.Fatalf("a coordinator's relay: %v %v", op, err)
	}
}

// A leader runs at most relayLimit requests of one stream at once, and
// reads no further meanwhile.
func TestRelayBoundsConcurrency(t *testing.T) {
	const limit, writes = 4, 12
	full := make(chan struct{}, 1)
	leader := startServerWith(t, "leader", serverConfig{setup: func(f *Forwarder) {
		f.relayLimit = limit
		f.relayFull = func() {
			select {
			case full <- struct{}{}:
			default:
			}
		}
	}})
	leader.impl.release, leader.impl.entered = make(chan struct{}), make(chan struct{}, writes)
	leader.leads.leads.Store(true)
	follower := startServer(t, "follower")
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := testCtx(t)
	errs := make(chan error, writes)
	for range writes {
		go func() {
			_, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "block"})
			errs <- err
		}()
	}
	for range limit {
		select {
		case <-leader.impl.entered:
		case <-ctx.Done():
			t.Fatal("the first requests did not start")
		}
	}
	select {
	case <-full:
	case <-ctx.Done():
		t.Fatal("the leader never waited for a free slot")
	}
	if n := leader.impl.running.Load(); n != limit {
		t.Fatalf("%d running, want %d", n, limit)
	}
	close(leader.impl.release)
	for range writes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p := leader.impl.peak.Load(); p != limit {
		t.Fatalf("peak of %d relayed requests at once, limit %d", p, limit)
	}
}

// gate is a stream client interceptor that holds relay openings until
// released (or their context ends) and counts them.
type gate struct {
	opens   atomic.Int64
	release chan struct{}
	waiting chan struct{}
	aborted chan struct{}
}

func (g *gate) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method == relayMethod {
		g.opens.Add(1)
		g.waiting <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			g.aborted <- struct{}{}
			return nil, ctx.Err()
		}
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// Opening the relay holds no lock every write needs, is done once however
// many writes want it, and is bounded by the opener's context; the others
// wait on their own.
func TestRelayOpensOutsideTheLock(t *testing.T) {
	leader := startServer(t, "leader")
	leader.leads.leads.Store(true)
	g := &gate{release: make(chan struct{}), waiting: make(chan struct{}, 8), aborted: make(chan struct{}, 8)}
	follower := startServerWith(t, "follower", serverConfig{dial: []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStreamInterceptor(g.stream)}})
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := testCtx(t)

	actx, cancelA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() {
		_, err := cl.CreateInstance(actx, &pb.CreateInstanceRequest{Name: "a"})
		aDone <- err
	}()
	<-g.waiting // a is opening the relay

	follower.fwd.mu.Lock() // not held meanwhile
	follower.fwd.mu.Unlock()
	// b waits for a's opening, on its own (shorter) deadline, and opens no other.
	bctx, cancelB := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelB()
	if _, err := cl.CreateInstance(bctx, &pb.CreateInstanceRequest{Name: "b"}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("b: %v", err)
	}
	if n := g.opens.Load(); n != 1 {
		t.Fatalf("%d openings, want 1", n)
	}
	// a gives up: its opening stops with it.
	cancelA()
	<-g.aborted
	if err := <-aDone; status.Code(err) != codes.Canceled {
		t.Fatalf("a: %v", err)
	}
	// The next write opens the relay anew.
	close(g.release)
	if op, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "c"}); err != nil || op.Id != "leader/c" {
		t.Fatalf("c: %v %v", op, err)
	}
	if n := g.opens.Load(); n != 2 {
		t.Fatalf("%d openings, want 2", n)
	}
}

// failFirstSend makes the first relay stream's sends fail, while its
// receiving side stays up.
type failFirstSend struct {
	opens atomic.Int64
}

type failingStream struct{ grpc.ClientStream }

func (failingStream) SendMsg(any) error { return errors.New("injected send failure") }

func (f *failFirstSend) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err == nil && method == relayMethod && f.opens.Add(1) == 1 {
		return failingStream{s}, nil
	}
	return s, err
}

// A failed send ends the relay: the waiting caller learns it at once (no
// deadline is set here), and the next write opens a new relay.
func TestRelaySendFailureEndsRelay(t *testing.T) {
	leader := startServer(t, "leader")
	leader.leads.leads.Store(true)
	ff := &failFirstSend{}
	follower := startServerWith(t, "follower", serverConfig{dial: []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStreamInterceptor(ff.stream)}})
	follower.leads.addr.Store(leader.addr)
	cl := client(t, follower.addr)
	ctx := testCtx(t)
	_, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "lost"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "injected send failure") {
		t.Fatalf("write on the failing relay: %v", err)
	}
	if op, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "next"}); err != nil || op.Id != "leader/next" {
		t.Fatalf("next write: %v %v", op, err)
	}
	if n := ff.opens.Load(); n != 2 {
		t.Fatalf("%d relays opened, want 2", n)
	}
}

// A message the leader cannot receive ends the stream with that error,
// not with an OK status.
func TestRelayReceiveErrorEndsStream(t *testing.T) {
	leader := startServer(t, "leader")
	leader.leads.leads.Store(true)
	stream := rawRelay(t, testCtx(t), leader.addr)
	_, err := relayOne(stream, &clusterv1.RelayCall{Id: 1, Method: pb.InstanceService_CreateInstance_FullMethodName, Payload: make([]byte, 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized message: %v", err)
	}
}

// Batches stay within the limit; an item larger alone goes alone; nothing
// is lost or reordered.
func TestSendBatchesLimit(t *testing.T) {
	const limit = 1000
	sizes := []int{300, 300, 300, 300, 2500, 10, 999, 1, 400, 400, 400}
	items := make(chan int, len(sizes))
	for _, n := range sizes {
		items <- n
	}
	close(items)
	size := func(n int) int { return n }
	var got []int
	var msgs [][]int
	err := sendBatches(items, nil, limit, size, func(b []int) error {
		msgs = append(msgs, slices.Clone(b))
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if n := sum(m); n > limit && len(m) > 1 {
			t.Fatalf("message of %d bytes, limit %d: %v", n, limit, msgs)
		}
	}
	if !slices.Equal(got, sizes) {
		t.Fatalf("got %v, want %v (messages %v)", got, sizes, msgs)
	}
	// A send error is returned at once.
	items = make(chan int, 2)
	items <- 1
	items <- 2
	if err := sendBatches(items, nil, limit, size, func([]int) error { return errors.New("boom") }); err == nil {
		t.Fatal("send error not returned")
	}
}

func sum(ns []int) (s int) {
	for _, n := range ns {
		s += n
	}
	return s
}

// A server with a unary interceptor that did not go through ServerOption
// (which relayed writes would skip) refuses API calls.
func TestInterceptorOutsideServerOptionRefused(t *testing.T) {
	extra := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	s := startServerWith(t, "s", serverConfig{opts: []grpc.ServerOption{grpc.ChainUnaryInterceptor(extra)}})
	s.leads.leads.Store(true)
	_, err := client(t, s.addr).CreateInstance(testCtx(t), &pb.CreateInstanceRequest{Name: "x"})
	if status.Code(err) != codes.Internal || s.impl.calls.Load() != 0 {
		t.Fatalf("call on a misconfigured server: %v", err)
	}
	// Through ServerOption it is fine.
	s = startServerWith(t, "s", serverConfig{interceptors: []grpc.UnaryServerInterceptor{extra}})
	s.leads.leads.Store(true)
	if _, err := client(t, s.addr).CreateInstance(testCtx(t), &pb.CreateInstanceRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
}

// A status goes across the relay with its code, message and details; a
// message that is not valid UTF-8 (which a proto string must be) is mended
// rather than failing the whole batch's encoding.
func TestRelayStatusRoundTrip(t *testing.T) {
	withDetails, _ := status.New(codes.FailedPrecondition, "no").WithDetails(&errdetails.ErrorInfo{Reason: "NOPE"})
	for _, tc := range []struct {
		name    string
		err     error
		code    codes.Code
		message string
		details int
	}{
		{"plain", status.Error(codes.NotFound, "gone"), codes.NotFound, "gone", 0},
		{"details", withDetails.Err(), codes.FailedPrecondition, "no", 1},
		{"not a status", errors.New("boom"), codes.Unknown, "boom", 0},
		{"invalid UTF-8", status.Error(codes.InvalidArgument, "bad \xff name"), codes.InvalidArgument, "bad \uFFFD name", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &clusterv1.RelayResponse{Replies: []*clusterv1.RelayReply{{Id: 1, Status: relayStatus(tc.err)}}}
			b, err := proto.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			got := new(clusterv1.RelayResponse)
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatal(err)
			}
			st := status.Convert(statusError(got.Replies[0].Status))
			if st.Code() != tc.code || st.Message() != tc.message || len(st.Details()) != tc.details {
				t.Fatalf("came back as %v %q %v", st.Code(), st.Message(), st.Details())
			}
		})
	}
}
