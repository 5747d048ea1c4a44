package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A follower relays writes to the leader over one long-lived stream rather
// than one unary call each: under load, a unary call per write (its own
// HTTP/2 stream, headers and trailers, a handler goroutine on each side)
// cost the follower and the leader more than the write itself. The stream
// carries batches: each message holds every request (or reply) queued
// while the previous one was being sent. The leader runs each request on
// the method's own handler, as if it had been called directly, and
// answers with the handler's reply or gRPC status, unchanged.
//
// Messages are google.protobuf.BytesValue, whose bytes are frames:
//
//	request: uvarint id | uvarint len | method | varint deadline (Unix ns, 0: none) | uvarint len | request
//	reply:   uvarint id | kind (0: reply, 1: google.rpc.Status) | uvarint len | message
const relayMethod = "/flotilla.internal.Relay/Relay"

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

// Registrar returns a grpc.ServiceRegistrar that registers services on s
// and remembers their unary methods, so relayed requests can be run on
// them. Register the API through it.
func (f *Forwarder) Registrar(s *grpc.Server) grpc.ServiceRegistrar {
	return registrar{f: f, s: s}
}

type registrar struct {
	f *Forwarder
	s *grpc.Server
}

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.s.RegisterService(desc, impl)
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	for _, m := range desc.Methods {
		r.f.handlers["/"+desc.ServiceName+"/"+m.MethodName] = handler{impl: impl, fn: m.Handler}
	}
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
	replies := make(chan relayReply, 256)
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- sendBatches(replies, nil, func(b []byte) error { return stream.SendMsg(wrapperspb.Bytes(b)) }, appendReply)
	}()
	defer func() {
		wg.Wait()
		close(replies)
		<-sendErr
	}()
	for {
		in := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(in); err != nil {
			return nil // the follower went away or restarts its stream
		}
		b := in.Value
		for len(b) > 0 {
			var r relayRequest
			var err error
			if r, b, err = readRequest(b); err != nil {
				return status.Errorf(codes.InvalidArgument, "relay: %v", err)
			}
			wg.Add(1)
			f.workers.run(func() {
				defer wg.Done()
				replies <- f.runRelayed(ctx, r)
			})
		}
	}
}

// runRelayed runs one relayed request on its method's handler.
func (f *Forwarder) runRelayed(ctx context.Context, r relayRequest) relayReply {
	fail := func(err error) relayReply {
		b, _ := proto.Marshal(status.Convert(err).Proto())
		return relayReply{id: r.id, kind: 1, msg: b}
	}
	if !f.leader.IsLeader() {
		return fail(refusedForward())
	}
	f.mu.Lock()
	h, ok := f.handlers[r.method]
	f.mu.Unlock()
	if !ok {
		return fail(status.Errorf(codes.Unimplemented, "relay: method %s not served here", r.method))
	}
	if r.deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, r.deadline))
		defer cancel()
	}
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(forwardedKey, "1"))
	dec := func(m any) error { return proto.Unmarshal(r.req, m.(proto.Message)) }
	reply, err := h.fn(h.impl, ctx, dec, nil)
	if err != nil {
		return fail(err)
	}
	b, err := proto.Marshal(reply.(proto.Message))
	if err != nil {
		return fail(status.Errorf(codes.Internal, "relay: encode reply: %v", err))
	}
	return relayReply{id: r.id, kind: 0, msg: b}
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
	id       uint64
	method   string
	deadline int64
	req      []byte
}

func appendRequest(b []byte, r relayRequest) []byte {
	b = binary.AppendUvarint(b, r.id)
	b = appendBytes(b, []byte(r.method))
	b = binary.AppendVarint(b, r.deadline)
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
	d, n := binary.Varint(b)
	if n <= 0 {
		return r, nil, errors.New("truncated deadline")
	}
	r.deadline = d
	r.req, b, err = readBytes(b[n:])
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
// one message, until items is closed or stop is. After a failed send it
// keeps draining items, so that producers never block, and returns the
// error once items or stop is closed.
func sendBatches[T any](items <-chan T, stop <-chan struct{}, send func([]byte) error, appendItem func([]byte, T) []byte) error {
	var err error
	for {
		var it T
		select {
		case v, ok := <-items:
			if !ok {
				return err
			}
			it = v
		case <-stop:
			return err
		}
		if err != nil {
			continue
		}
		b := appendItem(nil, it)
	more:
		for len(b) < 1<<20 {
			select {
			case v, ok := <-items:
				if !ok {
					break more
				}
				b = appendItem(b, v)
			default:
				break more
			}
		}
		err = send(b)
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

// openRelay starts a relay stream on conn.
func openRelay(conn *grpc.ClientConn) (*relay, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := conn.NewStream(ctx, &relayDesc.Streams[0], relayMethod)
	if err != nil {
		cancel()
		return nil, err
	}
	r := &relay{queue: make(chan relayRequest, 1024), done: make(chan struct{}), pending: map[uint64]chan relayReply{}}
	go func() {
		if err := sendBatches(r.queue, r.done, func(b []byte) error { return stream.SendMsg(wrapperspb.Bytes(b)) }, appendRequest); err != nil {
			cancel() // the receiver then ends the relay
		}
	}()
	go func() {
		defer cancel()
		err := r.receive(stream)
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
	return r, nil
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
func (r *relay) call(ctx context.Context, method string, req []byte) (rep relayReply, ok bool, err error) {
	ch := make(chan relayReply, 1)
	r.mu.Lock()
	if r.pending == nil {
		r.mu.Unlock()
		return rep, false, errRelayDown
	}
	r.nextID++
	id := r.nextID
	r.pending[id] = ch
	r.mu.Unlock()
	var deadline int64
	if d, has := ctx.Deadline(); has {
		deadline = d.UnixNano()
	}
	select {
	case r.queue <- relayRequest{id: id, method: method, deadline: deadline, req: req}:
	case <-r.done:
		return rep, false, errRelayDown
	case <-ctx.Done():
		r.forget(id)
		return rep, false, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case rep, ok = <-ch:
		return rep, ok, nil
	case <-ctx.Done():
		r.forget(id)
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
