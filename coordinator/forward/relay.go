package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	clusterv1 "github.com/flotilla-vm/flotilla/proto/flotilla/cluster/v1"
)

// A follower relays writes to the leader over one long-lived stream rather
// than one unary call each: under load, a unary call per write (its own
// HTTP/2 stream, headers and trailers, a handler goroutine on each side)
// cost the follower and the leader more than the write itself. The stream
// (clusterv1.RelayService, proto/flotilla/cluster/v1/forward.proto)
// carries batches: each message holds every call (or reply) queued while
// the previous one was being sent. The leader runs each call on the
// method's own handler, through the server's unary interceptors (those
// given to ServerOption, the forwarder's own excepted), with the client's
// metadata and what remained of its deadline, as if it had been called
// directly, and answers with the handler's reply or gRPC status, unchanged.
//
// The stream is no side door: only write methods (those the forwarder was
// made for) are run, with mutual TLS only a coordinator may open it, and
// the interceptors run as for a direct call.
//
// The deadline travels as the time left, not as an instant: the leader's
// clock need not agree with the follower's. The leader counts it from when
// it received the message, so the time the message spent in flight is not
// subtracted (a few milliseconds at most on a healthy link).
//
// A client's cancel is not carried across: once relayed, a write runs to
// its end (or its deadline) on the leader. Clients retry with the same
// request_id, which makes that safe.
const relayMethod = clusterv1.RelayService_Relay_FullMethodName

// Size limits of relay messages, well under gRPC's default 4 MiB limit on
// a received message. A batch grows to at most relayBatchMax; a call
// larger than that alone is forwarded with a unary call instead; a reply
// larger alone is sent alone, and one over relayReplyMax is replaced by a
// ResourceExhausted status.
const (
	relayBatchMax = 1 << 20
	relayReplyMax = 3 << 20
)

// relayConcurrency bounds the relayed requests running at once for one
// follower's stream; once reached, the leader stops reading the stream and
// HTTP/2 flow control holds the follower back.
const relayConcurrency = 256

// handler is one registered unary method, callable in-process.
type handler struct {
	impl any
	fn   grpc.MethodHandler
}

// ServerOption installs the server's unary interceptors: the forwarder
// first, then others in order. Relayed writes run through others on the
// leader exactly as direct calls do. Give the server its unary
// interceptors only through this option: the server's chain cannot be
// read back, so the relay runs the list given here, and a call to a
// method registered through Registrar fails (Internal) if the server has
// any unary interceptor besides this one — one that relayed writes would
// silently skip.
func (f *Forwarder) ServerOption(others ...grpc.UnaryServerInterceptor) grpc.ServerOption {
	return f.GuardedServerOption(nil, others...)
}

// GuardedServerOption is ServerOption with guard run first on every call
// this server receives, before a write is forwarded (so a follower refuses
// what its caller may not do, rather than relaying it): authorization and
// per-caller limits. Relayed writes do not run it again on the leader (the
// relay stream is itself guarded, and the follower ran it).
func (f *Forwarder) GuardedServerOption(guard grpc.UnaryServerInterceptor, others ...grpc.UnaryServerInterceptor) grpc.ServerOption {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	f.chain = chainUnary(others)
	f.guard = guard
	return grpc.ChainUnaryInterceptor(f.intercept)
}

// chainUnary makes one interceptor of ics (nil if there are none).
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	ics = append([]grpc.UnaryServerInterceptor(nil), ics...)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return h
			}
			return func(ctx context.Context, req any) (any, error) { return ics[i](ctx, req, info, next(i+1)) }
		}
		return ics[0](ctx, req, info, next(1))
	}
}

// intercept is the server's one unary interceptor: it forwards writes
// that reach a follower, and runs everything else through the others
// given to ServerOption.
func (f *Forwarder) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if f.guard != nil {
		return f.guard(ctx, req, info, func(ctx context.Context, req any) (any, error) { return f.route(ctx, req, info, h) })
	}
	return f.route(ctx, req, info, h)
}

// route forwards a write that reached a follower, and runs everything else
// through the others given to ServerOption.
func (f *Forwarder) route(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if mt, isWrite := f.replies[info.FullMethod]; isWrite && !f.leader.IsLeader() {
		return f.forwardWrite(ctx, req.(proto.Message), info.FullMethod, mt)
	}
	if f.chain == nil {
		return h(ctx, req)
	}
	return f.chain(ctx, req, info, h)
}

// interceptPC identifies the method value f.intercept (the same code for
// every Forwarder): the server's interceptor is it alone when nothing else
// was installed.
var interceptPC = reflect.ValueOf((&Forwarder{}).intercept).Pointer()

// Registrar returns a grpc.ServiceRegistrar that registers services on s
// and remembers their write methods, so relayed requests can be run on
// them. Register the API through it.
func (f *Forwarder) Registrar(s *grpc.Server) grpc.ServiceRegistrar {
	return registrar{f: f, s: s}
}

type registrar struct {
	f *Forwarder
	s *grpc.Server
}

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	r.f.hmu.Lock()
	defer r.f.hmu.Unlock()
	for i, m := range desc.Methods {
		full := "/" + desc.ServiceName + "/" + m.MethodName
		if _, write := r.f.replies[full]; write {
			r.f.handlers[full] = handler{impl: impl, fn: m.Handler}
		}
		fn := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			if ic == nil || reflect.ValueOf(ic).Pointer() != interceptPC {
				r.f.misconfigured.Do(func() {
					r.f.log.Error("forward: the server's unary interceptors were not installed with Forwarder.ServerOption; relayed writes would skip them: refusing API calls")
				})
				return nil, status.Error(codes.Internal, "server misconfigured: unary interceptors not installed through the forwarder")
			}
			return fn(srv, ctx, dec, ic)
		}
		d.Methods[i] = m
	}
	r.s.RegisterService(&d, impl)
}

// RegisterRelay serves the relay stream on s (followers send to it while
// this server leads).
func (f *Forwarder) RegisterRelay(s *grpc.Server) {
	clusterv1.RegisterRelayServiceServer(s, relayServer{f: f})
}

type relayServer struct {
	clusterv1.UnimplementedRelayServiceServer
	f *Forwarder
}

func (s relayServer) Relay(stream clusterv1.RelayService_RelayServer) error {
	return s.f.serveRelay(stream)
}

// serveRelay runs the calls relayed by one follower.
func (f *Forwarder) serveRelay(stream clusterv1.RelayService_RelayServer) error {
	ctx := stream.Context()
	if id, ok := mtls.PeerIdentity(ctx); ok && !id.Has(mtls.RoleCoordinator) {
		return status.Errorf(codes.PermissionDenied, "relay: %q is not a coordinator", id.Name)
	}
	replies := make(chan *clusterv1.RelayReply, 256)
	sem := make(chan struct{}, f.relayLimit)
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- sendBatches(replies, nil, relayBatchMax, entrySize[*clusterv1.RelayReply], func(b []*clusterv1.RelayReply) error {
			return stream.Send(&clusterv1.RelayResponse{Replies: b})
		})
		for range replies { // the stream is broken: drop the rest, so that no worker blocks
		}
	}()
	defer func() {
		wg.Wait()
		close(replies)
		<-sendErr
	}()
	for {
		in, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return nil // the follower closed its side: it restarts its stream
			}
			return err
		}
		received := time.Now()
		for _, c := range in.Calls {
			// Take a slot before reading on: when all are taken the
			// stream is not read, and flow control pushes back.
			select {
			case sem <- struct{}{}:
			default:
				if f.relayFull != nil {
					f.relayFull()
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return status.FromContextError(ctx.Err()).Err()
				}
			}
			wg.Add(1)
			f.workers.run(func() {
				defer wg.Done()
				replies <- f.runRelayed(ctx, received, c)
				<-sem
			})
		}
	}
}

// runRelayed runs one relayed call on its method's handler, through the
// server's interceptors.
func (f *Forwarder) runRelayed(ctx context.Context, received time.Time, c *clusterv1.RelayCall) *clusterv1.RelayReply {
	fail := func(err error) *clusterv1.RelayReply {
		return &clusterv1.RelayReply{Id: c.Id, Status: relayStatus(err)}
	}
	if _, write := f.replies[c.Method]; !write {
		return fail(status.Errorf(codes.PermissionDenied, "relay: %s is not a write method; only writes are relayed", c.Method))
	}
	if !f.leader.IsLeader() {
		return fail(refusedForward())
	}
	f.hmu.RLock()
	h, ok := f.handlers[c.Method]
	chain := f.chain
	f.hmu.RUnlock()
	if !ok {
		return fail(status.Errorf(codes.Unimplemented, "relay: method %s not served here", c.Method))
	}
	if c.Timeout != nil {
		left := c.Timeout.AsDuration()
		if c.Timeout.CheckValid() != nil || left <= 0 {
			return fail(status.Errorf(codes.InvalidArgument, "relay: bad timeout %v", c.Timeout))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, received.Add(left))
		defer cancel()
	}
	md := make(metadata.MD, len(c.Metadata)+2)
	for _, e := range c.Metadata {
		md[e.Key] = append(md[e.Key], string(e.Value))
	}
	md[forwardedKey] = []string{"1"}
	md[caller.Header] = []string{string(c.Caller)}
	ctx = metadata.NewIncomingContext(ctx, md)
	ctx = grpc.NewContextWithServerTransportStream(ctx, relayedCall{method: c.Method})
	dec := func(m any) error { return proto.Unmarshal(c.Payload, m.(proto.Message)) }
	reply, err := h.fn(h.impl, ctx, dec, chain)
	if err != nil {
		return fail(err)
	}
	b, err := proto.Marshal(reply.(proto.Message))
	if err != nil {
		return fail(status.Errorf(codes.Internal, "relay: encode reply: %v", err))
	}
	if len(b) > relayReplyMax {
		return fail(status.Errorf(codes.ResourceExhausted, "relay: reply of %d bytes too large", len(b)))
	}
	return &clusterv1.RelayReply{Id: c.Id, Payload: b}
}

// relayStatus is err's gRPC status, to send. The message is made valid
// UTF-8: a proto string must be, and one invalid string would fail the
// whole batch's encoding.
func relayStatus(err error) *clusterv1.RelayStatus {
	st := status.Convert(err).Proto()
	return &clusterv1.RelayStatus{Code: st.Code, Message: strings.ToValidUTF8(st.Message, "\uFFFD"), Details: st.Details}
}

// statusError is the error a relayed status stands for.
func statusError(s *clusterv1.RelayStatus) error {
	return status.FromProto(&spb.Status{Code: s.Code, Message: s.Message, Details: s.Details}).Err()
}

// relayedCall stands for a relayed request's own call in its context:
// grpc.Method names the method, and headers and trailers a handler sets
// are dropped (as the unary forwarding dropped them), rather than written
// onto the shared relay stream.
type relayedCall struct{ method string }

func (c relayedCall) Method() string             { return c.method }
func (relayedCall) SetHeader(metadata.MD) error  { return nil }
func (relayedCall) SendHeader(metadata.MD) error { return nil }
func (relayedCall) SetTrailer(metadata.MD) error { return nil }

// relayMetadata is what of a client's incoming metadata goes with its
// relayed request: everything but HTTP/2 pseudo-headers, gRPC's own
// (grpc-*) and hop-by-hop headers, the forwarding mark, and a caller header
// (the follower sends its own).
func relayMetadata(in metadata.MD) []*clusterv1.MetadataEntry {
	var kv []*clusterv1.MetadataEntry
	for k, vs := range in {
		if !relayedKey(k) {
			continue
		}
		for _, v := range vs {
			kv = append(kv, &clusterv1.MetadataEntry{Key: k, Value: []byte(v)})
		}
	}
	return kv
}

func relayedKey(k string) bool {
	if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") {
		return false
	}
	switch k {
	case forwardedKey, caller.Header, "content-type", "user-agent", "te", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host":
		return false
	}
	return true
}

// workers runs relayed requests on goroutines kept for reuse: a handler
// grows its stack to the same depth every time, and a fresh goroutine per
// request paid for growing (copying) it on every one.
type workers struct {
	idle chan func()
}

// workerIdle is how long a worker with nothing to do waits before it exits.
const workerIdle = 10 * time.Second

func (w *workers) run(fn func()) {
	select {
	case w.idle <- fn:
		return
	default:
	}
	go func() {
		t := time.NewTimer(workerIdle)
		defer t.Stop()
		for {
			fn()
			t.Reset(workerIdle)
			select {
			case fn = <-w.idle:
			case <-t.C:
				return
			}
		}
	}()
}

// entrySize is what m adds to the encoded message whose repeated field
// holds it (a RelayRequest's calls, a RelayResponse's replies).
func entrySize[M proto.Message](m M) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(m))
}

// sendBatches sends what arrives on items, everything queued at once in
// one message of at most limit bytes (as size counts them; an item larger
// alone is sent alone), until items is closed or stop is. It returns the
// first send error at once: the stream is broken, and the caller ends it.
func sendBatches[T any](items <-chan T, stop <-chan struct{}, limit int, size func(T) int, send func([]T) error) error {
	var batch []T
	var next T // an item that did not fit in the last batch
	hasNext := false
	for {
		if !hasNext {
			select {
			case v, ok := <-items:
				if !ok {
					return nil
				}
				next = v
			case <-stop:
				return nil
			}
		}
		batch, hasNext = append(batch[:0], next), false
		n := size(next)
		closed := false
	more:
		for n < limit {
			select {
			case v, ok := <-items:
				if !ok {
					closed = true
					break more
				}
				if s := size(v); n+s > limit {
					next, hasNext = v, true
					break more
				} else {
					batch, n = append(batch, v), n+s
				}
			default:
				break more
			}
		}
		err := send(batch)
		clear(batch) // keep no sent item alive
		if err != nil {
			return err
		}
		if closed {
			return nil
		}
	}
}

// relay is a follower's stream to one leader.
type relay struct {
	queue chan *clusterv1.RelayCall
	done  chan struct{} // closed when the stream ends
	err   error         // why, once done

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *clusterv1.RelayReply
}

// errRelaySend marks a relay ended by a failed send.
var errRelaySend = errors.New("relay send failed")

// openRelay starts a relay stream on conn. The stream lives in base (the
// forwarder's); opening it waits no longer than ctx (the caller's).
func openRelay(ctx, base context.Context, conn *grpc.ClientConn) (*relay, error) {
	sctx, cancel := context.WithCancelCause(base)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	stream, err := clusterv1.NewRelayServiceClient(conn).Relay(sctx)
	if !stop() { // the caller's context ended while opening
		cancel(nil)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		cancel(err)
		return nil, err
	}
	return startRelay(sctx, cancel, stream), nil
}

// startRelay runs a relay on stream, which lives in ctx; cancel ends it.
func startRelay(ctx context.Context, cancel context.CancelCauseFunc, stream clusterv1.RelayService_RelayClient) *relay {
	r := &relay{queue: make(chan *clusterv1.RelayCall, 1024), done: make(chan struct{}), pending: map[uint64]chan *clusterv1.RelayReply{}}
	go func() {
		err := sendBatches(r.queue, r.done, relayBatchMax, entrySize[*clusterv1.RelayCall], func(b []*clusterv1.RelayCall) error {
			return stream.Send(&clusterv1.RelayRequest{Calls: b})
		})
		if err != nil && err != io.EOF { // io.EOF: the stream has ended; the receiver learns why
			// End the stream: the receiver then ends the relay, and
			// every waiting caller learns it at once.
			cancel(fmt.Errorf("%w: %w", errRelaySend, err))
		}
	}()
	go func() {
		defer cancel(nil)
		err := r.receive(stream)
		if c := context.Cause(ctx); errors.Is(c, errRelaySend) {
			err = c
		}
		r.mu.Lock()
		r.err = err
		close(r.done)
		pending := r.pending
		r.pending = nil
		r.mu.Unlock()
		for _, ch := range pending {
			close(ch)
		}
	}()
	return r
}

func (r *relay) receive(stream clusterv1.RelayService_RelayClient) error {
	for {
		in, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, rep := range in.Replies {
			r.mu.Lock()
			ch := r.pending[rep.Id]
			delete(r.pending, rep.Id)
			r.mu.Unlock()
			if ch != nil {
				ch <- rep
			}
		}
	}
}

// errRelayDown: the relay had ended before the call was handed to it.
var errRelayDown = errors.New("relay stream ended")

// call relays c and waits for its reply. ok is false if the stream broke
// after c was handed to it (it may or may not have run); err is
// errRelayDown if it broke before. call sets c's id and timeout.
func (r *relay) call(ctx context.Context, c *clusterv1.RelayCall) (rep *clusterv1.RelayReply, ok bool, err error) {
	if d, has := ctx.Deadline(); has {
		left := time.Until(d)
		if left <= 0 {
			return nil, false, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
		c.Timeout = durationpb.New(left)
	}
	ch := make(chan *clusterv1.RelayReply, 1)
	r.mu.Lock()
	if r.pending == nil {
		r.mu.Unlock()
		return nil, false, errRelayDown
	}
	r.nextID++
	c.Id = r.nextID
	r.pending[c.Id] = ch
	r.mu.Unlock()
	select {
	case r.queue <- c:
	case <-r.done:
		return nil, false, errRelayDown
	case <-ctx.Done():
		r.forget(c.Id)
		return nil, false, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case rep, ok = <-ch:
		return rep, ok, nil
	case <-ctx.Done():
		r.forget(c.Id)
		return nil, false, status.FromContextError(ctx.Err()).Err()
	}
}

func (r *relay) forget(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending != nil {
		delete(r.pending, id)
	}
}

// broken reports whether the stream has ended.
func (r *relay) broken() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}
