// Package forward sends writes that reach a follower on to the leader, so
// clients may call any coordinator. It is a gRPC unary interceptor (see
// Forwarder.ServerOption): the request is relayed unchanged (same method,
// same message, same metadata, what is left of its deadline), and the
// leader's answer, or its gRPC error, is returned as is. Reads are
// never forwarded; they are served from the local state at the revision it
// has reached (clients needing read-your-writes pass min_revision).
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	clusterv1 "github.com/flotilla-vm/flotilla/proto/flotilla/cluster/v1"
)

// forwardedKey marks a relayed request: a server that is not the leader
// either does not relay it again (no forwarding loops during elections).
const forwardedKey = "x-flotilla-forwarded"

// Leader tells whether this server leads and where the leader's API is.
type Leader interface {
	IsLeader() bool
	LeaderAPIAddr() (string, bool)
}

// Forwarder relays write methods to the leader.
type Forwarder struct {
	leader  Leader
	replies map[string]protoreflect.MessageType // full method -> response type
	dial    []grpc.DialOption
	wait    time.Duration
	log     *slog.Logger
	base    context.Context // relay streams to leaders live in it; Close ends it
	stop    context.CancelFunc

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	relays map[string]*relaySlot // leader API address -> relay stream to it
	unary  map[string]time.Time  // leaders that served no relay, since when: forward one call each

	hmu           sync.RWMutex
	handlers      map[string]handler          // write method -> handler, for relayed requests
	chain         grpc.UnaryServerInterceptor // the server's interceptors after the forwarder (nil: none)
	guard         grpc.UnaryServerInterceptor // run before the forwarder (nil: none)
	misconfigured sync.Once                   // logs a server whose interceptors bypass ServerOption
	workers       workers                     // run relayed requests
	relayLimit    int                         // relayed requests running at once, per stream
	passReplies   atomic.Bool                 // the server writes a rawReply as is (ServerCodec)
	relayFull     func()                      // tests: called when a stream waits for a free slot
}

// relaySlot holds the relay to one leader, or its opening.
type relaySlot struct {
	ready      chan struct{} // closed once opened, or failed
	r          *relay
	err        error // why the opening failed
	callerGone bool  // it failed because the caller that opened it gave up
}

// New returns a forwarder for the given full method names
// ("/flotilla.v1.InstanceService/CreateInstance"). dial options apply to
// connections to the leader (e.g. transport credentials); wait bounds how
// long a write waits for a leader to be known during an election.
func New(leader Leader, methods []string, wait time.Duration, log *slog.Logger, dial ...grpc.DialOption) (*Forwarder, error) {
	f := &Forwarder{leader: leader, replies: map[string]protoreflect.MessageType{}, wait: wait, log: log, conns: map[string]*grpc.ClientConn{},
		relays: map[string]*relaySlot{}, unary: map[string]time.Time{}, handlers: map[string]handler{}, workers: workers{idle: make(chan func())},
		relayLimit: relayConcurrency}
	f.base, f.stop = context.WithCancel(context.Background())
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	f.dial = dial
	for _, m := range methods {
		mt, err := replyType(m)
		if err != nil {
			return nil, err
		}
		f.replies[m] = mt
	}
	return f, nil
}

// replyType finds a method's response message type in the proto registry.
func replyType(fullMethod string) (protoreflect.MessageType, error) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("forward: malformed method %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("forward: service %s: %w", svc, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("forward: %s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("forward: no method %s", fullMethod)
	}
	return protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
}

// forwardWrite sends a write that reached this follower on to the leader.
func (f *Forwarder) forwardWrite(ctx context.Context, req proto.Message, method string, mt protoreflect.MessageType) (any, error) {
	in, _ := metadata.FromIncomingContext(ctx)
	if len(in.Get(forwardedKey)) > 0 {
		return nil, refusedForward()
	}
	// The leader sees this follower as its peer: the caller goes along.
	who := caller.Relayed(ctx)
	md := relayMetadata(in)
	deadline := time.Now().Add(f.wait)
	for {
		addr, err := f.leaderAddr(ctx, deadline)
		if err != nil {
			return nil, err
		}
		conn, err := f.conn(addr)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "connect to leader %s: %v", addr, err)
		}
		reply, err := f.relayCall(ctx, addr, conn, method, req, md, who, mt)
		if errors.Is(err, errNoRelay) {
			out := in.Copy()
			out.Set(forwardedKey, "1")
			out.Set(caller.Header, who)
			reply = mt.New().Interface()
			err = conn.Invoke(metadata.NewOutgoingContext(ctx, out), method, req, reply)
		}
		if err == nil {
			return reply, nil
		}
		// The node stopped leading between our look-up and its check. It
		// refused before doing anything, so asking the new leader is safe.
		if isRefusedForward(err) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			case <-time.After(25 * time.Millisecond):
			}
			continue
		}
		return nil, err // the leader's own status, unchanged
	}
}

const refusedReason = "FORWARDED_TO_FOLLOWER"

// refusedForward is a follower's answer to a relayed write: nothing was done.
func refusedForward() error {
	st := status.New(codes.Unavailable, "not the leader (a forwarded write reached a follower; retry)")
	st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: refusedReason, Domain: "flotilla.dev"})
	return st.Err()
}

func isRefusedForward(err error) bool {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == refusedReason {
			return true
		}
	}
	return false
}

// leaderAddr waits, until deadline, for a known leader with a registered API address.
func (f *Forwarder) leaderAddr(ctx context.Context, deadline time.Time) (string, error) {
	for {
		if addr, ok := f.leader.LeaderAPIAddr(); ok {
			return addr, nil
		}
		if f.leader.IsLeader() {
			return "", status.Error(codes.Unavailable, "became leader while forwarding; retry")
		}
		if time.Now().After(deadline) {
			return "", status.Error(codes.Unavailable, "no leader known (election in progress?); retry")
		}
		select {
		case <-ctx.Done():
			return "", status.FromContextError(ctx.Err()).Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (f *Forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, f.dial...)
	if err != nil {
		return nil, err
	}
	f.conns[addr] = c
	return c, nil
}

// errNoRelay: the leader serves no relay stream; forward with a unary call.
var errNoRelay = errors.New("leader serves no relay")

// relayCall forwards one request over the relay stream to the leader at
// addr, with the client's metadata md and the caller who.
func (f *Forwarder) relayCall(ctx context.Context, addr string, conn *grpc.ClientConn, method string, req proto.Message, md []*clusterv1.MetadataEntry, who string, mt protoreflect.MessageType) (any, error) {
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "forward: encode request: %v", err)
	}
	// A new message each time: one sent before may still be being encoded.
	call := &clusterv1.RelayCall{Method: method, Payload: payload, Metadata: md, Caller: []byte(who)}
	if entrySize(call) > relayBatchMax {
		return nil, errNoRelay // too large for a relay message: one unary call
	}
	for attempt := 0; ; attempt++ {
		r, err := f.relayTo(ctx, addr, conn)
		if err != nil {
			return nil, err
		}
		rep, ok, err := r.call(ctx, call)
		if errors.Is(err, errRelayDown) && attempt == 0 {
			f.dropRelay(addr, r) // it broke before taking the call: a new one may
			continue
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			f.dropRelay(addr, r)
			if status.Code(r.err) == codes.Unimplemented {
				return nil, errNoRelay // nothing ran: the leader refused the stream itself
			}
			return nil, status.Errorf(codes.Unavailable, "relay to the leader %s broke: %v", addr, r.err)
		}
		if rep.Status != nil {
			return nil, statusError(rep.Status)
		}
		if f.passReplies.Load() {
			return rawReply(rep.Payload), nil
		}
		reply := mt.New().Interface()
		if err := proto.Unmarshal(rep.Payload, reply); err != nil {
			return nil, status.Errorf(codes.Internal, "forward: decode reply: %v", err)
		}
		return reply, nil
	}
}

// relayTo returns the relay stream to the leader at addr, opening it if
// needed. One caller opens it, outside f.mu and for no longer than its own
// context; others wanting it meanwhile wait for that, each on its own.
func (f *Forwarder) relayTo(ctx context.Context, addr string, conn *grpc.ClientConn) (*relay, error) {
	for {
		f.mu.Lock()
		if since, ok := f.unary[addr]; ok {
			if time.Since(since) < unaryRetry {
				f.mu.Unlock()
				return nil, errNoRelay
			}
			delete(f.unary, addr) // it may have been upgraded in place: try again
		}
		if s := f.relays[addr]; s != nil {
			select {
			case <-s.ready:
				if s.err == nil && !s.r.broken() {
					f.mu.Unlock()
					return s.r, nil
				}
				delete(f.relays, addr) // broken: open a new one
			default:
				f.mu.Unlock() // being opened: wait for it
				select {
				case <-s.ready:
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				if s.err != nil && !s.callerGone {
					return nil, s.err
				}
				continue
			}
		}
		s := &relaySlot{ready: make(chan struct{})}
		f.relays[addr] = s
		base := f.base
		f.mu.Unlock()

		r, err := openRelay(ctx, base, conn)
		f.mu.Lock()
		if err != nil {
			s.callerGone = ctx.Err() != nil
			if s.callerGone {
				s.err = status.FromContextError(ctx.Err()).Err()
			} else {
				s.err = status.Errorf(codes.Unavailable, "open relay to leader %s: %v", addr, err)
			}
			if f.relays[addr] == s {
				delete(f.relays, addr)
			}
		}
		s.r = r
		close(s.ready)
		f.mu.Unlock()
		return r, s.err
	}
}

func (f *Forwarder) dropRelay(addr string, r *relay) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.relays[addr]; s != nil && s.r == r {
		delete(f.relays, addr)
	}
	if r.broken() && status.Code(r.err) == codes.Unimplemented {
		f.unary[addr] = time.Now()
	}
}

// unaryRetry is how long a leader that served no relay (a server of an
// older release, during a rolling upgrade) is sent one call per write
// before its relay is tried again: it may have been upgraded since, at the
// same address.
const unaryRetry = time.Minute

// Close closes the connections to leaders.
func (f *Forwarder) Close() {
	f.stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relays = map[string]*relaySlot{}
	for a, c := range f.conns {
		c.Close()
		delete(f.conns, a)
	}
}
