// Package session is the agent's side of the agent protocol: it keeps one
// AgentService.Connect stream open to the coordinator, registers the host
// with its full inventory, streams power-state changes and periodic resyncs,
// hands the coordinator's steps to the executor and answers its questions
// about them (QueryStep).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Defaults for zero Config fields.
const (
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultKeepaliveTime    = 30 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	// A registration is one Raft entry; the coordinator gives an agent's
	// reports as long (10s) before it ends their session.
	DefaultRegisterTimeout   = 10 * time.Second
	DefaultHypervisorTimeout = 30 * time.Second
	// Used when Registered leaves an interval unset.
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultResyncInterval    = time.Minute
)

// Config configures a Client.
type Config struct {
	// Coordinator is host:port of a coordinator, or a comma-separated list
	// of them. Any member will do: a follower names the leader, and the
	// agent goes there; when one is unreachable the next is tried.
	Coordinator string
	HostID      string
	Driver      hypervisor.Driver
	// Executor runs the steps; it outlives sessions, so a step keeps
	// running across reconnects.
	Executor Executor
	// Capacity overrides, field by field, what the driver reports; zero
	// fields are asked of the driver.
	Capacity     hypervisor.Capacity
	AgentVersion string
	// Labels are the host's placement labels, sent with Register.
	Labels map[string]string
	// PeerAddress is where this agent serves AgentPeerService (host:port),
	// sent with every Register; empty if it serves none.
	PeerAddress string
	// IgnoreEvents leaves hypervisor events unsubscribed, so the
	// coordinator learns of changes only through resyncs (a test knob).
	IgnoreEvents bool
	// Guests, when set, is told which domains run (from the inventories
	// and events) and gives what their guests say on the guest channel,
	// sent as GuestReports.
	Guests Guests
	// Images pulls images for the coordinator's image tasks; nil: such
	// tasks fail.
	Images ImageFetcher
	Logger *slog.Logger

	// Reconnect and resubscribe back-off: MinBackoff doubling to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// gRPC keepalive pings on an idle connection. The coordinator's server
	// must permit pings this often (keepalive.EnforcementPolicy.MinTime).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// RegisterTimeout bounds the wait for Registered.
	RegisterTimeout time.Duration
	// HypervisorTimeout bounds each List, Capacity, Networks and Resync call.
	HypervisorTimeout time.Duration
	// DialOptions are added to the defaults (insecure credentials, keepalive).
	DialOptions []grpc.DialOption
}

// Executor runs steps (agent/executor.Executor, or it wrapped to be
// measured).
type Executor interface {
	// Execute runs a step and returns its result; nil if it is already
	// running (the call that started it answers).
	Execute(step *agentv1.RunStep, sessionEpoch uint64) *agentv1.StepResult
	// Report says where a step is, or nil.
	Report(stepID, operationID string) *agentv1.StepReport
}

// Guests is the guest channel watcher (agent/guestchan.Watcher).
type Guests interface {
	// Sync is every domain the hypervisor listed; Observe one that changed.
	Sync([]hypervisor.DomainStatus)
	Observe(hypervisor.DomainStatus)
	// Reports is the latest report of every guest heard from; Updates
	// the changes (coalesced, ordered by Seq).
	Reports() []guestchan.Report
	Updates() <-chan guestchan.Report
}

// Client keeps the agent's session with the coordinator.
type Client struct {
	cfg     Config
	log     *slog.Logger
	opts    []grpc.DialOption
	targets []string
	conns   map[string]*grpc.ClientConn // by address; guarded by mu

	// results of steps (and answers to queries) not yet sent; results
	// outlive the session they were asked on and go out on the next one.
	out outbox
	// order is held from reading a step's fate to queueing it, so that a
	// step reported RUNNING has its result queued after the report, never
	// before: the coordinator waits for a result that follows a RUNNING.
	order sync.Mutex

	mu    sync.Mutex
	epoch uint64 // of the live session, 0 between sessions

	live atomic.Pointer[sess] // the registered session, nil between sessions (see ReportCopyProgress)

	images imageTasks
	// imageBusy counts the image tasks and image steps (bundle, fetch)
	// running: a full image report is not taken meanwhile, so it cannot
	// arrive after, and undo, what one of them reports.
	imageBusy atomic.Int32
}

// New prepares a client; it does not connect until Run.
func New(cfg Config) (*Client, error) {
	if cfg.Coordinator == "" || cfg.HostID == "" || cfg.Driver == nil || cfg.Executor == nil {
		return nil, errors.New("session: Coordinator, HostID, Driver and Executor are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setDefault(&cfg.MinBackoff, DefaultMinBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.KeepaliveTime, DefaultKeepaliveTime)
	setDefault(&cfg.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDefault(&cfg.RegisterTimeout, DefaultRegisterTimeout)
	setDefault(&cfg.HypervisorTimeout, DefaultHypervisorTimeout)

	opts := append([]grpc.DialOption{
		// TODO(security): mutual TLS between agent and coordinator.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:    cfg.KeepaliveTime,
			Timeout: cfg.KeepaliveTimeout,
			// Only the session stream needs watching; pings between
			// sessions would count against the server's ping policy.
			PermitWithoutStream: false,
		}),
	}, cfg.DialOptions...)
	c := &Client{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "agent/session", "host", cfg.HostID),
		opts:  opts,
		conns: map[string]*grpc.ClientConn{},
		out:   outbox{ready: make(chan struct{}, 1)},
	}
	for _, a := range strings.Split(cfg.Coordinator, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if _, err := c.client(a); err != nil {
				return nil, err
			}
			c.targets = append(c.targets, a)
		}
	}
	if len(c.targets) == 0 {
		return nil, errors.New("session: no coordinator address")
	}
	return c, nil
}

// client returns the (cached) stub for a coordinator address.
func (c *Client) client(addr string) (agentv1.AgentServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := c.conns[addr]
	if !ok {
		var err error
		if conn, err = grpc.NewClient(addr, c.opts...); err != nil {
			return nil, fmt.Errorf("session: coordinator %q: %w", addr, err)
		}
		c.conns[addr] = conn
	}
	return agentv1.NewAgentServiceClient(conn), nil
}

// notLeader reads a coordinator's NOT_LEADER refusal: whether err is one,
// and the leader's address when the refusing member knew it.
func notLeader(err error) (leader string, ok bool) {
	st, isStatus := status.FromError(err) // unwraps
	if !isStatus {
		return "", false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.Reason == "NOT_LEADER" {
			return info.Metadata["leader_api_address"], true
		}
	}
	return "", false
}

// move is where the agent goes after a session ends, and after what pause.
type move struct {
	target string
	wait   time.Duration
	follow bool // to the leader a member named
}

// nextMove decides the agent's next attempt after a session with the
// coordinator at index cur of targets ended with err. A member that
// registered the host, or refused as not the leader, is alive: the cluster
// is up and at most an election is under way, so the back-off starts over
// and the next member is asked at once. Only members that do not answer at
// all make the agent back off further, so a dead member in the list costs
// a short pause rather than a growing one.
func nextMove(targets []string, cur int, registered bool, err error, b *backoff, minWait time.Duration) (move, int) {
	leader, refused := notLeader(err)
	if leader != "" {
		// A short pause: hints can be stale for a moment during an election.
		return move{target: leader, wait: minWait, follow: true}, cur
	}
	if registered || refused {
		b.reset()
	}
	next := (cur + 1) % len(targets)
	return move{target: targets[next], wait: b.next()}, next
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Close closes the connections to the coordinators.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for a, conn := range c.conns {
		if err := conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("session: close %s: %w", a, err))
		}
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

// Registered reports whether a coordinator has registered this agent on
// a session that is live now.
func (c *Client) Registered() bool { return c.live.Load() != nil }

// Epoch is the host epoch of the live session, 0 when there is none.
func (c *Client) Epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *Client) setEpoch(e uint64) {
	c.mu.Lock()
	c.epoch = e
	c.mu.Unlock()
}

// Run keeps a session open until ctx ends, reconnecting with back-off when
// the stream breaks. Steps still running when it returns keep running in the
// executor; close the executor to end them.
func (c *Client) Run(ctx context.Context) error {
	b := backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}
	target, cur := c.targets[0], 0
	for {
		api, err := c.client(target)
		if err != nil {
			return err
		}
		registered, err := c.session(ctx, api)
		c.setEpoch(0)
		if ctx.Err() != nil {
			return nil
		}
		var m move
		m, cur = nextMove(c.targets, cur, registered, err, &b, c.cfg.MinBackoff)
		if m.follow {
			c.log.Info("coordinator is not the leader; following", "from", target, "leader", m.target)
		} else {
			c.log.Warn("session ended; reconnecting", "err", err, "retry_in", m.wait, "next", m.target)
		}
		target = m.target
		if !sleep(ctx, m.wait) {
			return nil
		}
	}
}

// session runs one stream from Register to its end. It reports whether the
// coordinator registered the host, and why the session ended.
func (c *Client) session(parent context.Context, api agentv1.AgentServiceClient) (registered bool, err error) {
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: every goroutine of this session ends with it
	// The session's context is not a child of parent: on shutdown the
	// stream is first closed politely, then canceled.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	stopEarly := context.AfterFunc(parent, func() { cancel(context.Cause(parent)) })
	defer stopEarly()

	// Subscribe before taking the inventory, so that a change between the
	// two is not lost: it arrives as an event after the inventory.
	var events <-chan hypervisor.Event
	if !c.cfg.IgnoreEvents {
		events, err = c.cfg.Driver.Events(ctx)
		if err != nil {
			return false, fmt.Errorf("subscribe to hypervisor events: %w", err)
		}
	}
	reg, err := c.register(ctx)
	if err != nil {
		return false, err
	}
	stream, err := api.Connect(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}

	s := &sess{
		c:          c,
		stream:     stream,
		send:       make(chan *agentv1.ConnectRequest, 256),
		registered: make(chan struct{}),
		closing:    make(chan struct{}),
		cancel:     cancel,
	}
	wg.Go(func() { s.sender(ctx, reg) })

	// The first answer must be Registered; a coordinator that does not
	// answer in time gets a new session.
	timer := time.AfterFunc(c.cfg.RegisterTimeout, func() {
		cancel(errors.New("no Registered from the coordinator in time"))
	})
	first, err := stream.Recv()
	timer.Stop()
	if err != nil {
		cancel(err)
		return false, fmt.Errorf("wait for Registered: %w", cause(ctx, err))
	}
	r := first.GetRegistered()
	if r == nil {
		cancel(errors.New("first message is not Registered"))
		return false, fmt.Errorf("coordinator answered Register with %T", first.GetMsg())
	}
	s.epoch = r.GetEpoch()
	s.heartbeat = interval(r.GetHeartbeatInterval().AsDuration(), DefaultHeartbeatInterval)
	resync := interval(r.GetResyncInterval().AsDuration(), DefaultResyncInterval)
	c.setEpoch(s.epoch)
	close(s.registered)
	c.live.Store(s)
	defer c.live.CompareAndSwap(s, nil)
	c.log.Info("registered", "epoch", s.epoch, "heartbeat_interval", s.heartbeat, "resync_interval", resync,
		"domains", len(reg.GetInventory()))

	received := make(chan struct{})
	wg.Go(func() { defer close(received); s.receiver(ctx) })
	wg.Go(func() { s.watch(ctx, events, resync) })
	if c.cfg.Guests != nil {
		wg.Go(func() { s.guestReports(ctx) })
	}
	if !stopEarly() {
		// parent ended during registration; its AfterFunc canceled ctx.
		return true, cause(ctx, parent.Err())
	}
	select {
	case <-ctx.Done():
	case <-parent.Done():
		// Half-close so the coordinator sees a clean end of stream, and
		// give it a moment to finish its side.
		close(s.closing)
		select {
		case <-received:
		case <-time.After(closeGrace):
		}
		cancel(context.Cause(parent))
	}
	return true, cause(ctx, nil)
}

// closeGrace is how long a shutdown waits for the coordinator to end the stream.
const closeGrace = 2 * time.Second

// register builds the Register message from the hypervisor's view now.
func (c *Client) register(ctx context.Context) (*agentv1.Register, error) {
	c.resyncNetworks(ctx)
	inv, err := c.inventory(ctx)
	if err != nil {
		// An empty inventory would tell the coordinator every domain is
		// gone, so without a list there is no registration.
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HypervisorTimeout)
	defer cancel()
	capa := c.cfg.Capacity
	if capa.VCPUs == 0 || capa.MemoryMiB == 0 || capa.DiskGiB == 0 {
		got, err := c.cfg.Driver.Capacity(hctx)
		if err != nil {
			return nil, fmt.Errorf("hypervisor capacity: %w", err)
		}
		capa.VCPUs = cmp(capa.VCPUs, got.VCPUs)
		capa.MemoryMiB = cmp(capa.MemoryMiB, got.MemoryMiB)
		capa.DiskGiB = cmp(capa.DiskGiB, got.DiskGiB)
	}
	nets, err := c.cfg.Driver.Networks(hctx)
	if err != nil {
		// Saying it serves no networks would make the coordinator place
		// no networked instance here, but only until the next session.
		return nil, fmt.Errorf("hypervisor networks: %w", err)
	}
	images, listed := c.listImages(hctx)
	return &agentv1.Register{
		Images:         images,
		ImagesListed:   listed,
		HostId:         c.cfg.HostID,
		HypervisorKind: c.cfg.Driver.Kind(),
		Capacity: &flotillav1.Resources{
			Vcpus:     capa.VCPUs,
			MemoryMib: capa.MemoryMiB,
			DiskGib:   capa.DiskGiB,
		},
		Inventory:    inv,
		AgentVersion: c.cfg.AgentVersion,
		Labels:       c.cfg.Labels,
		PeerAddress:  c.cfg.PeerAddress,
		// What the host can serve now: a bridge the operator removes is
		// no longer offered from the next session on.
		ManagedNetworks: nets.ManagedNetworks,
		Bridges:         nets.Bridges,
	}, nil
}

// cmp returns override unless it is zero.
func cmp[T comparable](override, fallback T) T {
	var zero T
	if override != zero {
		return override
	}
	return fallback
}

// inventory lists every domain as the hypervisor sees it now.
func (c *Client) inventory(ctx context.Context) ([]*agentv1.DomainState, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HypervisorTimeout)
	defer cancel()
	list, err := c.cfg.Driver.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	if c.cfg.Guests != nil {
		c.cfg.Guests.Sync(list)
	}
	out := make([]*agentv1.DomainState, 0, len(list))
	for _, d := range list {
		out = append(out, executor.DomainState(d))
	}
	return out, nil
}

// sess is one session's stream and the goroutines around it.
type sess struct {
	c      *Client
	stream grpc.BidiStreamingClient[agentv1.ConnectRequest, agentv1.ConnectResponse]
	// send carries everything but step results and reports to the sender,
	// the one goroutine that calls stream.Send.
	send       chan *agentv1.ConnectRequest
	registered chan struct{} // closed once epoch and heartbeat are set
	closing    chan struct{} // closed on agent shutdown: half-close the stream
	epoch      uint64
	heartbeat  time.Duration
	cancel     context.CancelCauseFunc
}

// sender is the only goroutine that writes to the stream: Register first,
// then, once registered, queued messages, step results and heartbeats.
func (s *sess) sender(ctx context.Context, reg *agentv1.Register) {
	log := s.c.log
	fail := func(err error) {
		if ctx.Err() == nil {
			log.Warn("send failed", "err", err)
		}
		s.cancel(fmt.Errorf("send: %w", err))
	}
	reg.SentAt = timestamppb.Now() // as it goes, as heartbeats are
	if err := s.stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Register{Register: reg}}); err != nil {
		fail(err)
		return
	}
	select {
	case <-s.registered:
	case <-ctx.Done():
		return
	}
	hb := time.NewTicker(s.heartbeat)
	defer hb.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			_ = s.stream.CloseSend()
			return
		case m := <-s.send:
			err = s.stream.Send(m)
		case <-hb.C:
			// Stamped as it goes: the coordinator measures our clock's skew from it.
			err = s.stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{SentAt: timestamppb.Now()}}})
		case <-s.c.out.ready:
			err = s.sendQueued()
		}
		if err != nil {
			fail(err)
			return
		}
	}
}

// sendQueued sends every queued step result and this session's step
// reports, in the order they were queued; those not sent go back to the
// queue. A report asked on an earlier session is dropped: it answered a
// question this coordinator did not ask.
func (s *sess) sendQueued() error {
	items := s.c.out.take()
	for i, it := range items {
		if it.asked != nil && it.asked != s {
			s.c.log.Debug("dropping a step report of an ended session", "step", it.msg.GetStepReport().GetStepId())
			continue
		}
		if err := s.stream.Send(it.msg); err != nil {
			s.c.out.requeue(items[i:])
			return err
		}
		if r := it.msg.GetStepResult(); r != nil {
			s.c.log.Debug("sent step result", "operation", r.GetOperationId(), "step", r.GetStepId(),
				"instance", r.GetState().GetInstanceId(), "succeeded", r.GetSucceeded(), "fault", r.GetFault().GetCode())
		} else if r := it.msg.GetStepReport(); r != nil {
			s.c.log.Debug("sent step report", "operation", r.GetOperationId(), "step", r.GetStepId(),
				"state", r.GetState().String())
		}
	}
	return nil
}

// enqueue hands a message to the sender; false if the session ended.
func (s *sess) enqueue(ctx context.Context, m *agentv1.ConnectRequest) bool {
	select {
	case s.send <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// receiver reads the coordinator's messages until the stream breaks.
func (s *sess) receiver(ctx context.Context) {
	for {
		m, err := s.stream.Recv()
		if err != nil {
			s.cancel(fmt.Errorf("receive: %w", err))
			return
		}
		switch msg := m.GetMsg().(type) {
		case *agentv1.ConnectResponse_RunStep:
			s.runStep(msg.RunStep)
		case *agentv1.ConnectResponse_QueryStep:
			s.queryStep(msg.QueryStep)
		case *agentv1.ConnectResponse_ImageTask:
			s.imageTask(msg.ImageTask)
		case *agentv1.ConnectResponse_Registered:
			s.c.log.Warn("ignoring a second Registered in one session", "epoch", msg.Registered.GetEpoch())
		default:
			s.c.log.Warn("ignoring unknown message from the coordinator", "type", fmt.Sprintf("%T", msg))
		}
	}
}

// runStep hands the step to the executor without blocking the receiver.
// The step is not tied to the session: if the stream breaks meanwhile, its
// result waits in the outbox for the next session.
func (s *sess) runStep(step *agentv1.RunStep) {
	s.c.log.Debug("step received", "operation", step.GetOperationId(), "step", step.GetStepId(),
		"instance", step.GetInstanceId(), "kind", step.GetKind().String(), "action", step.GetAction().String(),
		"step_epoch", step.GetHostEpoch())
	c, epoch := s.c, s.epoch
	if imageAction(step.GetAction()) {
		c.imageBusy.Add(1)
	}
	go func() {
		if res := c.cfg.Executor.Execute(step, epoch); res != nil {
			c.order.Lock()
			c.out.push(outItem{msg: &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_StepResult{StepResult: res}}})
			c.order.Unlock()
			c.imageStep(step, res)
		}
		if imageAction(step.GetAction()) {
			c.imageBusy.Add(-1)
		}
	}()
}

// queryStep answers a QueryStep without blocking the receiver. The answer
// never waits for the step itself: a running step is reported RUNNING and
// its result follows as usual.
func (s *sess) queryStep(q *agentv1.QueryStep) {
	s.c.log.Debug("step queried", "operation", q.GetOperationId(), "step", q.GetStepId())
	c := s.c
	go func() {
		c.order.Lock()
		defer c.order.Unlock()
		if rep := c.cfg.Executor.Report(q.GetStepId(), q.GetOperationId()); rep != nil {
			c.out.push(outItem{msg: &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_StepReport{StepReport: rep}}, asked: s})
		}
	}()
}

// watch forwards hypervisor events as power events and sends the full
// inventory every resyncEvery. Both in one goroutine, so that an event newer
// than an inventory is never sent before it: the coordinator would
// otherwise see a change and then an older list without it.
//
// events is nil with IgnoreEvents. When the driver closes the channel (the
// hypervisor restarted) watch resubscribes with back-off and resyncs at
// once for whatever happened in between.
func (s *sess) watch(ctx context.Context, events <-chan hypervisor.Event, resyncEvery time.Duration) {
	t := time.NewTicker(resyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.resync(ctx)
		case ev, ok := <-events:
			if !ok {
				if events = s.resubscribe(ctx); events == nil {
					return
				}
				s.resync(ctx)
				continue
			}
			s.c.log.Debug("power event", "instance", ev.ID, "state", string(ev.State), "reason", ev.Reason)
			if s.c.cfg.Guests != nil {
				s.c.cfg.Guests.Observe(ev.DomainStatus)
			}
			m := &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_PowerEvent{PowerEvent: executor.DomainState(ev.DomainStatus)}}
			if !s.enqueue(ctx, m) {
				return
			}
		}
	}
}

// resubscribe subscribes to events again, with back-off, until it works or
// ctx ends (then nil).
func (s *sess) resubscribe(ctx context.Context) <-chan hypervisor.Event {
	s.c.log.Warn("hypervisor event subscription closed; resubscribing")
	b := backoff{min: s.c.cfg.MinBackoff, max: s.c.cfg.MaxBackoff}
	for {
		events, err := s.c.cfg.Driver.Events(ctx)
		if err == nil {
			s.c.log.Info("resubscribed to hypervisor events; resyncing")
			// A broken subscription usually means the hypervisor restarted:
			// networks it lost come back before the inventory goes out.
			s.c.resyncNetworks(ctx)
			return events
		}
		wait := b.next()
		s.c.log.Warn("resubscribing to hypervisor events failed", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// resyncNetworks has the driver put back the networks and reservations its
// domains need (at every session start, which includes the agent's own,
// and after the hypervisor's events broke off). A failure is logged: the
// next session or resubscription tries again.
func (c *Client) resyncNetworks(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HypervisorTimeout)
	defer cancel()
	if err := c.cfg.Driver.Resync(hctx); err != nil && ctx.Err() == nil {
		c.log.Warn("network resync failed", "err", err)
	}
}

// resync sends the full inventory once. A failed List only skips this
// round: the next one, or the events, will tell.
func (s *sess) resync(ctx context.Context) {
	taken := timestamppb.Now() // before List: an absence is dated no later than the listing
	inv, err := s.c.inventory(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.c.log.Warn("resync skipped", "err", err)
		}
		return
	}
	s.enqueue(ctx, &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Resync{Resync: &agentv1.Inventory{Domains: inv, ObservedAt: taken}}})
	s.resyncImages(ctx)
}

// outbox holds step results and reports until a session sends them.
type outbox struct {
	mu    sync.Mutex
	q     []outItem
	ready chan struct{} // capacity 1: "the queue may be non-empty"
}

// outItem is one queued message.
type outItem struct {
	msg *agentv1.ConnectRequest
	// asked is the session a report answers; nil for a step result, which
	// any session may deliver.
	asked *sess
}

func (o *outbox) push(r outItem) {
	o.mu.Lock()
	o.q = append(o.q, r)
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

func (o *outbox) take() []outItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.q
	o.q = nil
	return q
}

// requeue puts unsent items back in front, keeping their order.
func (o *outbox) requeue(rs []outItem) {
	o.mu.Lock()
	o.q = append(append([]outItem(nil), rs...), o.q...)
	o.mu.Unlock()
	o.signal()
}

// backoff is exponential back-off with jitter, so that agents cut off
// together do not reconnect together.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// Between half and all of the current step.
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func interval(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// cause is why ctx ended if it did, else err.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// guestReports sends, once registered, the current report of every guest
// heard from, then each change. A report older (by Seq) than one already
// sent for its instance is skipped: the watcher may hand out one it held
// from before the snapshot.
func (s *sess) guestReports(ctx context.Context) {
	g := s.c.cfg.Guests
	sent := map[string]uint64{}
	send := func(r guestchan.Report) bool {
		if r.Seq <= sent[r.InstanceID] {
			return true
		}
		sent[r.InstanceID] = r.Seq
		s.c.log.Debug("guest report", "instance", r.InstanceID, "state", r.State.String(), "stage", r.Stage,
			"reason", r.Reason, "dropped_lines", r.Dropped)
		return s.enqueue(ctx, &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_GuestReport{GuestReport: guestReport(r)}})
	}
	for _, r := range g.Reports() {
		if !send(r) {
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-g.Updates():
			if !send(r) {
				return
			}
		}
	}
}

func guestReport(r guestchan.Report) *agentv1.GuestReport {
	st := agentv1.GuestState_GUEST_STATE_UNSPECIFIED
	switch r.State {
	case guestchan.Booting:
		st = agentv1.GuestState_GUEST_STATE_BOOTING
	case guestchan.Ready:
		st = agentv1.GuestState_GUEST_STATE_READY
	case guestchan.Failed:
		st = agentv1.GuestState_GUEST_STATE_FAILED
	}
	return &agentv1.GuestReport{
		InstanceId:   r.InstanceID,
		State:        st,
		Stage:        r.Stage,
		Reason:       r.Reason,
		ObservedAt:   timestamppb.New(r.ObservedAt),
		GuestVersion: r.Version,
		DroppedLines: r.Dropped,
		Protocol:     uint32(r.Protocol),
		BootId:       r.Boot,
		Os:           r.OS,
		OsVersion:    r.OSVersion,
		Kernel:       r.Kernel,
		Unresponsive: r.Unresponsive,
	}
}
