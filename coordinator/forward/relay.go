package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// A follower relays writes to the leader over one long-lived stream rather
// than one unary call each: under load, a unary call per write (its own
// HTTP/2 stream, headers and trailers, a handler goroutine on each side)
// cost the follower and the leader more than the write itself. The stream
// carries batches: each message holds every request (or reply) queued
// while the previous one was being sent. The leader runs each request on
// the method's own handler, through the server's unary interceptors (those
// given to ServerOption, the forwarder's own excepted), with the client's
// metadata and what remained of its deadline, as if it had been called
// directly, and answers with the handler's reply or gRPC status, unchanged.
//
// The stream is no side door: only write methods (those the forwarder was
// made for) are run, with mutual TLS only a coordinator may open it, and
// the interceptors run as for a direct call.
//
// Messages are google.protobuf.BytesValue, whose bytes are frames:
//
//	request: uvarint id | uvarint len | method | uvarint timeout (ns left when sent, 0: none)
//	         | uvarint pairs | pairs × (uvarint len | key | uvarint len | value) | uvarint len | request
//	reply:   uvarint id | kind (0: reply, 1: google.rpc.Status) | uvarint len | message
//
// The deadline travels as the time left, not as an instant: the leader's
// clock need not agree with the follower's. The leader counts it from when
// it received the message, so the time the message spent in flight is not
// subtracted (a few milliseconds at most on a healthy link).
//
// A client's cancel is not carried across: once relayed, a write runs to
// its end (or its deadline) on the leader. Clients retry with the same
// request_id, which makes that safe.
const relayMethod = "/flotilla.internal.Relay/Relay"

// Size limits of relay messages, well under gRPC's default 4 MiB limit on
// a received message. A batch grows to at most relayBatchMax; a request
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

var relayDesc = grpc.ServiceDesc{
	ServiceName: "flotilla.internal.Relay",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Relay", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error { return srv.(*Forwarder).serveRelay(stream) },
	}},
}

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
	f.hmu.Lock()
	defer f.hmu.Unlock()
	f.chain = chainUnary(others)
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
func (f *Forwarder) RegisterRelay(s *grpc.Server) { s.RegisterService(&relayDesc, f) }

type relayReply struct {
	id   uint64
	kind byte
	msg  []byte
}

// serveRelay runs the requests relayed by one follower.
func (f *Forwarder) serveRelay(stream grpc.ServerStream) error {
	ctx := stream.Context()
	if id, ok := mtls.PeerIdentity(ctx); ok && !id.Has(mtls.RoleCoordinator) {
		return status.Errorf(codes.PermissionDenied, "relay: %q is not a coordinator", id.Name)
	}
	replies := make(chan relayReply, 256)
	sem := make(chan struct{}, f.relayLimit)
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- sendBatches(replies, nil, relayBatchMax, func(b []byte) error { return stream.SendMsg(wrapperspb.Bytes(b)) }, appendReply)
		for range replies { // the stream is broken: drop the rest, so that no worker blocks
		}
	}()
	defer func() {
		wg.Wait()
		close(replies)
		<-sendErr
	}()
	for {
		in := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(in); err != nil {
			if err == io.EOF {
				return nil // the follower closed its side: it restarts its stream
			}
			return err
		}
		received := time.Now()
		b := in.Value
		for len(b) > 0 {
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
			var r relayRequest
			var err error
			if r, b, err = readRequest(b); err != nil {
				return status.Errorf(codes.InvalidArgument, "relay: %v", err)
			}
			wg.Add(1)
			f.workers.run(func() {
				defer wg.Done()
				replies <- f.runRelayed(ctx, received, r)
				<-sem
			})
		}
	}
}

// runRelayed runs one relayed request on its method's handler, through
// the server's interceptors.
func (f *Forwarder) runRelayed(ctx context.Context, received time.Time, r relayRequest) relayReply {
	fail := func(err error) relayReply {
		b, _ := proto.Marshal(status.Convert(err).Proto())
		return relayReply{id: r.id, kind: 1, msg: b}
	}
	if _, write := f.replies[r.method]; !write {
		return fail(status.Errorf(codes.PermissionDenied, "relay: %s is not a write method; only writes are relayed", r.method))
	}
	if !f.leader.IsLeader() {
		return fail(refusedForward())
	}
	f.hmu.RLock()
	h, ok := f.handlers[r.method]
	chain := f.chain
	f.hmu.RUnlock()
	if !ok {
		return fail(status.Errorf(codes.Unimplemented, "relay: method %s not served here", r.method))
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, received.Add(r.timeout))
		defer cancel()
	}
	md := make(metadata.MD, len(r.md)/2+1)
	for i := 0; i+1 < len(r.md); i += 2 {
		md[r.md[i]] = append(md[r.md[i]], r.md[i+1])
	}
	md[forwardedKey] = []string{"1"}
	ctx = metadata.NewIncomingContext(ctx, md)
	ctx = grpc.NewContextWithServerTransportStream(ctx, relayedCall{method: r.method})
	dec := func(m any) error { return proto.Unmarshal(r.req, m.(proto.Message)) }
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
	return relayReply{id: r.id, kind: 0, msg: b}
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
// relayed request, as key, value pairs: everything but HTTP/2
// pseudo-headers, gRPC's own (grpc-*) and hop-by-hop headers, the
// forwarding mark, and a caller header (the follower adds its own).
func relayMetadata(in metadata.MD) []string {
	var kv []string
	for k, vs := range in {
		if !relayedKey(k) {
			continue
		}
		for _, v := range vs {
			kv = append(kv, k, v)
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

type relayRequest struct {
	id      uint64
	method  string
	timeout time.Duration // left when sent; 0: none
	md      []string      // key, value pairs
	req     []byte
}

// size bounds the encoded size of r.
func (r relayRequest) size() int {
	n := 4*binary.MaxVarintLen64 + len(r.method) + len(r.req)
	for _, s := range r.md {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

func appendRequest(b []byte, r relayRequest) []byte {
	b = binary.AppendUvarint(b, r.id)
	b = appendBytes(b, []byte(r.method))
	b = binary.AppendUvarint(b, uint64(max(r.timeout, 0)))
	b = binary.AppendUvarint(b, uint64(len(r.md)/2))
	for _, s := range r.md[:len(r.md)/2*2] {
		b = appendBytes(b, []byte(s))
	}
	return appendBytes(b, r.req)
}

func readRequest(b []byte) (r relayRequest, rest []byte, err error) {
	var m []byte
	if r.id, b, err = readUvarint(b); err != nil {
		return r, nil, err
	}
	if m, b, err = readBytes(b); err != nil {
		return r, nil, err
	}
	r.method = string(m)
	var t, pairs uint64
	if t, b, err = readUvarint(b); err != nil {
		return r, nil, err
	}
	if t > 1<<62 {
		return r, nil, errors.New("bad timeout")
	}
	r.timeout = time.Duration(t)
	if pairs, b, err = readUvarint(b); err != nil {
		return r, nil, err
	}
	if pairs > uint64(len(b))/2 { // each takes two bytes at least
		return r, nil, errors.New("truncated metadata")
	}
	if pairs > 0 {
		r.md = make([]string, 0, 2*pairs)
		for range 2 * pairs {
			var s []byte
			if s, b, err = readBytes(b); err != nil {
				return r, nil, err
			}
			r.md = append(r.md, string(s))
		}
	}
	r.req, b, err = readBytes(b)
	return r, b, err
}

func appendReply(b []byte, r relayReply) []byte {
	b = binary.AppendUvarint(b, r.id)
	b = append(b, r.kind)
	return appendBytes(b, r.msg)
}

func readReply(b []byte) (r relayReply, rest []byte, err error) {
	if r.id, b, err = readUvarint(b); err != nil {
		return r, nil, err
	}
	if len(b) == 0 || b[0] > 1 {
		return r, nil, errors.New("bad reply kind")
	}
	r.kind = b[0]
	r.msg, b, err = readBytes(b[1:])
	return r, b, err
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("truncated frame")
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(b)) {
		return nil, nil, errors.New("truncated frame")
	}
	return b[:n], b[n:], nil
}

// sendBatches sends what arrives on items, everything queued at once in
// one message of at most limit bytes (an item larger alone is sent alone),
// until items is closed or stop is. It returns the first send error at
// once: the stream is broken, and the caller ends it.
func sendBatches[T any](items <-chan T, stop <-chan struct{}, limit int, send func([]byte) error, appendItem func([]byte, T) []byte) error {
	var next []byte // an item that did not fit in the last message, encoded
	for {
		b := next
		next = nil
		if b == nil {
			select {
			case v, ok := <-items:
				if !ok {
					return nil
				}
				b = appendItem(nil, v)
			case <-stop:
				return nil
			}
		}
		closed := false
	more:
		for len(b) < limit {
			select {
			case v, ok := <-items:
				if !ok {
					closed = true
					break more
				}
				n := len(b)
				b = appendItem(b, v)
				if len(b) > limit {
					next = append([]byte(nil), b[n:]...)
					b = b[:n]
					break more
				}
			default:
				break more
			}
		}
		if err := send(b); err != nil {
			return err
		}
		if closed {
			return nil
		}
	}
}

// relay is a follower's stream to one leader.
type relay struct {
	queue chan relayRequest
	done  chan struct{} // closed when the stream ends
	err   error         // why, once done

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan relayReply
}

// errRelaySend marks a relay ended by a failed send.
var errRelaySend = errors.New("relay send failed")

// openRelay starts a relay stream on conn. The stream lives in base (the
// forwarder's); opening it waits no longer than ctx (the caller's).
func openRelay(ctx, base context.Context, conn *grpc.ClientConn) (*relay, error) {
	sctx, cancel := context.WithCancelCause(base)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	stream, err := conn.NewStream(sctx, &relayDesc.Streams[0], relayMethod)
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
func startRelay(ctx context.Context, cancel context.CancelCauseFunc, stream grpc.ClientStream) *relay {
	r := &relay{queue: make(chan relayRequest, 1024), done: make(chan struct{}), pending: map[uint64]chan relayReply{}}
	go func() {
		err := sendBatches(r.queue, r.done, relayBatchMax, func(b []byte) error { return stream.SendMsg(wrapperspb.Bytes(b)) }, appendRequest)
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

func (r *relay) receive(stream grpc.ClientStream) error {
	for {
		in := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		b := in.Value
		for len(b) > 0 {
			var rep relayReply
			var err error
			if rep, b, err = readReply(b); err != nil {
				return fmt.Errorf("relay reply: %w", err)
			}
			r.mu.Lock()
			ch := r.pending[rep.id]
			delete(r.pending, rep.id)
			r.mu.Unlock()
			if ch != nil {
				ch <- rep
			}
		}
	}
}

// errRelayDown: the relay had ended before the request was handed to it.
var errRelayDown = errors.New("relay stream ended")

// call relays one request and waits for its reply. ok is false if the
// stream broke after the request was handed to it (it may or may not have
// run); err is errRelayDown if it broke before.
func (r *relay) call(ctx context.Context, req relayRequest) (rep relayReply, ok bool, err error) {
	if d, has := ctx.Deadline(); has {
		req.timeout = time.Until(d)
		if req.timeout <= 0 {
			return rep, false, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
	}
	ch := make(chan relayReply, 1)
	r.mu.Lock()
	if r.pending == nil {
		r.mu.Unlock()
		return rep, false, errRelayDown
	}
	r.nextID++
	req.id = r.nextID
	r.pending[req.id] = ch
	r.mu.Unlock()
	select {
	case r.queue <- req:
	case <-r.done:
		return rep, false, errRelayDown
	case <-ctx.Done():
		r.forget(req.id)
		return rep, false, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case rep, ok = <-ch:
		return rep, ok, nil
	case <-ctx.Done():
		r.forget(req.id)
		return rep, false, status.FromContextError(ctx.Err()).Err()
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
