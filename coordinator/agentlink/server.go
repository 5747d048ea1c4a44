package agentlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// ErrNoSession means the host has no live session on this coordinator.
var ErrNoSession = errors.New("host has no live agent session")

// ErrQueueFull means the host's session has more messages waiting for its
// stream than it may hold: the agent is slow or stuck. Nothing was queued;
// the caller keeps the step and delivers it again (the orchestrator asks
// what became of a step it could not send, then re-sends it).
var ErrQueueFull = errors.New("agent session send queue is full")

var hostIDRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// Applier commits an encoded command through the replicated log.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
	IsLeader() bool
}

// Config configures the agent link.
type Config struct {
	Applier           Applier
	Logger            *slog.Logger
	HeartbeatInterval time.Duration // told to agents; default 2s
	ResyncInterval    time.Duration // told to agents; default 30s
	// LeaderAPIAddr points agents that reached a follower at the leader.
	LeaderAPIAddr func() (string, bool)
	// Store is read by the liveness watch to find hosts without a session.
	Store *state.Store
	Now   func() time.Time
	// OnStepReport hears an agent's answer to a QueryStep that is not a
	// result (the step is unknown to the agent, or still running there).
	OnStepReport func(hostID string, epoch uint64, r *agentv1.StepReport)
	// SendQueue bounds the messages waiting for one agent's stream; default 1024.
	SendQueue int
	// EventVisible, when set, is told for each agent event (a power
	// event, a full resync, a guest report) how long it took from the
	// agent's timestamp (clamped to our clock) until it was applied here,
	// and its kind ("power", "resync", "guest").
	EventVisible func(kind string, d time.Duration)
}

// Server implements agentv1.AgentServiceServer and tracks live sessions.
type Server struct {
	agentv1.UnimplementedAgentServiceServer
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	// joining counts the registrations in flight per host: recorded READY in
	// the log, but their session not yet listed here.
	joining map[string]int
	changed chan struct{} // closed when the set of sessions changes
}

type session struct {
	hostID   string
	epoch    uint64
	out      chan *agentv1.ConnectResponse
	done     chan struct{}
	lastSeen time.Time
	reaped   bool // ended by the liveness watch; still recorded as disconnected
	busy     bool // committing one of its reports: waiting on us, not silent
	// sendingSince is when the message being written to the stream was
	// taken from out (zero when none is): a write that does not finish
	// means the agent does not read its stream.
	sendingSince time.Time
	stuck        bool   // ended because its stream did not take our messages
	overloaded   bool   // a message was refused because out was full (logged once)
	clock        *clock // the receive loop's only
}

// New returns an agent link server.
func New(cfg Config) *Server {
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1024
	}
	return &Server{cfg: cfg, log: cfg.Logger, sessions: map[string]*session{}, joining: map[string]int{}, changed: make(chan struct{})}
}

// Changed returns a channel closed when a session opens or closes.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Sessions is how many agents have a live session with this server.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Epoch returns the epoch of the host's live session.
func (s *Server) Epoch(hostID string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[hostID]
	if !ok {
		return 0, false
	}
	return ss.epoch, true
}

// Send queues a step on the host's live session, stamped with its epoch.
// It never blocks: a session whose queue is full refuses with ErrQueueFull.
func (s *Server) Send(hostID string, step *agentv1.RunStep) error {
	return s.queue(hostID, func(epoch uint64) *agentv1.ConnectResponse {
		step.HostEpoch = epoch
		return &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_RunStep{RunStep: step}}
	})
}

// Query asks the host's agent what became of a step; the answer comes
// back as a result (committed like any step result) or to OnStepReport.
func (s *Server) Query(hostID string, q *agentv1.QueryStep) error {
	return s.queue(hostID, func(uint64) *agentv1.ConnectResponse {
		return &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_QueryStep{QueryStep: q}}
	})
}

// queue hands a message to the host's session without waiting: the caller
// is the orchestrator's one loop, which serves every host, so one agent that
// does not read its stream must not hold up the others. A session whose
// stream stays blocked is ended by the liveness watch (reapStuck), and its
// agent reconnects and is asked again about what it was sent.
func (s *Server) queue(hostID string, msg func(epoch uint64) *agentv1.ConnectResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[hostID]
	if !ok {
		return fmt.Errorf("host %q: %w", hostID, ErrNoSession)
	}
	select {
	case ss.out <- msg(ss.epoch):
		ss.overloaded = false
		return nil
	default:
	}
	if !ss.overloaded {
		ss.overloaded = true
		s.log.Warn("agent session send queue is full; refusing messages until it drains",
			"host", hostID, "epoch", ss.epoch, "queued", len(ss.out))
	}
	return fmt.Errorf("host %q: %w", hostID, ErrQueueFull)
}

func (s *Server) apply(ctx context.Context, typ string, body any) (any, error) {
	return fsm.Propose(ctx, s.cfg.Applier, typ, s.cfg.Now(), body)
}

// Connect serves one agent's session.
func (s *Server) Connect(stream agentv1.AgentService_ConnectServer) error {
	if !s.cfg.Applier.IsLeader() {
		return s.notLeader()
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	received := s.cfg.Now()
	reg := first.GetRegister()
	if reg == nil {
		return status.Error(codes.InvalidArgument, "the first message must be register")
	}
	if !hostIDRE.MatchString(reg.HostId) {
		return status.Errorf(codes.InvalidArgument, "host_id %q: must be 1-63 lowercase letters, digits, '.' or '-'", reg.HostId)
	}
	// Under mutual TLS an agent speaks only for the host its certificate names.
	if id, ok := mtls.PeerIdentity(stream.Context()); ok && (!id.Has(mtls.RoleAgent) || id.Name != reg.HostId) {
		s.log.Warn("agent refused: certificate does not name this host", "host", reg.HostId, "cert", id.Name, "roles", id.Roles)
		return status.Errorf(codes.PermissionDenied, "certificate %q (roles %v) may not act for host %q", id.Name, id.Roles, reg.HostId)
	}
	clk := &clock{s: s, host: reg.HostId}
	cmd, err := s.registration(reg, clk)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	s.mu.Lock()
	s.joining[reg.HostId]++
	s.mu.Unlock()
	joined := false
	defer func() {
		if !joined {
			s.leaveJoining(reg.HostId)
		}
	}()
	v, err := s.apply(ctx, fsm.TypeRegisterHost, cmd)
	if err != nil {
		if !s.cfg.Applier.IsLeader() {
			return s.notLeader() // lost leadership while registering
		}
		return status.Errorf(codes.Unavailable, "register host %q: %v", reg.HostId, err)
	}
	ss := &session{hostID: reg.HostId, epoch: v.(uint64), clock: clk, out: make(chan *agentv1.ConnectResponse, s.cfg.SendQueue), done: make(chan struct{}), lastSeen: s.cfg.Now()}
	log := s.log.With("host", ss.hostID, "epoch", ss.epoch)
	log.Info("agent registered", "inventory", len(reg.Inventory), "kind", reg.HypervisorKind, "images", len(reg.GetImages()))
	s.registeredImages(ctx, reg)

	err = stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Registered{Registered: &agentv1.Registered{
		Epoch: ss.epoch, HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval), ResyncInterval: durationpb.New(s.cfg.ResyncInterval),
	}}})
	if err != nil {
		return err
	}
	s.mu.Lock()
	if old, ok := s.sessions[ss.hostID]; ok {
		close(old.done) // a newer session of the same host supersedes it
	}
	s.sessions[ss.hostID] = ss
	s.leaveJoiningLocked(ss.hostID)
	joined = true
	s.notifyLocked()
	s.mu.Unlock()

	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sendLoop(ctx, stream, ss) }()
	queue := make(chan queued, 4*maxBatch)
	if c, ok := s.hostClock(ss, reg.GetSentAt(), received); ok {
		if cmd, err := fsm.Encode(fsm.TypeHostClock, s.cfg.Now(), c); err == nil {
			queue <- queued{cmd: cmd} // the first of an empty queue
		}
	}
	recvDone := make(chan error, 1)
	go func() {
		err := s.recvLoop(ctx, stream, ss, queue)
		close(queue) // the committer flushes what was queued, then ends
		recvDone <- err
	}()
	commitDone := make(chan error, 1)
	go func() { commitDone <- s.commitLoop(context.WithoutCancel(ctx), ss, queue) }()
	var recvErr error
	select {
	case recvErr = <-recvDone:
		// Reports the agent sent before it went are still recorded.
		select {
		case <-commitDone:
		case <-ss.done:
		}
	case recvErr = <-commitDone:
	case <-ss.done:
		// Superseded, or ended by the liveness watch: returning tears the
		// stream down, which also ends the receive loop.
		recvErr = status.Error(codes.Aborted, "session ended by the coordinator")
	}

	s.mu.Lock()
	current := s.sessions[ss.hostID] == ss
	if current {
		delete(s.sessions, ss.hostID)
		close(ss.done)
		s.notifyLocked()
	}
	current = current || ss.reaped || ss.stuck
	s.mu.Unlock()
	if current {
		// Record the disconnection; a superseded session must not mark the host down.
		// A session ended for silence means the host is down; a closed stream, disconnected.
		if _, err := s.apply(context.Background(), fsm.TypeDisconnectHost, fsm.DisconnectHost{HostID: ss.hostID, Epoch: ss.epoch, Down: ss.reaped}); err != nil {
			log.Warn("recording disconnection failed", "err", err)
		}
		log.Info("agent disconnected", "err", recvErr)
	}
	select {
	case err := <-sendErr:
		if recvErr == nil {
			recvErr = err
		}
	default:
	}
	return recvErr
}

func (s *Server) leaveJoining(hostID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaveJoiningLocked(hostID)
}

func (s *Server) leaveJoiningLocked(hostID string) {
	if s.joining[hostID]--; s.joining[hostID] <= 0 {
		delete(s.joining, hostID)
	}
}

func (s *Server) sendLoop(ctx context.Context, stream agentv1.AgentService_ConnectServer, ss *session) error {
	for {
		select {
		case m := <-ss.out:
			s.mu.Lock()
			ss.sendingSince = s.cfg.Now()
			s.mu.Unlock()
			err := stream.Send(m)
			s.mu.Lock()
			ss.sendingSince = time.Time{}
			s.mu.Unlock()
			if err != nil {
				return err
			}
		case <-ss.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// recvLoop reads the agent's messages and queues its reports, in order, for
// the committer; heartbeats only refresh the session's liveness.
func (s *Server) recvLoop(ctx context.Context, stream agentv1.AgentService_ConnectServer, ss *session, queue chan<- queued) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		select {
		case <-ss.done:
			return status.Error(codes.Aborted, "superseded by a newer session of the same host")
		default:
		}
		s.mu.Lock()
		ss.lastSeen = s.cfg.Now()
		s.mu.Unlock()
		typ, body, err := s.command(ss, m)
		if err != nil {
			return err
		}
		if typ == "" {
			continue
		}
		cmd, err := fsm.Encode(typ, s.cfg.Now(), body)
		if err != nil {
			return status.Errorf(codes.Internal, "encode report: %v", err)
		}
		q := queued{cmd: cmd}
		q.kind, q.at = eventOf(body)
		select {
		case queue <- q:
		case <-ctx.Done():
			return ctx.Err()
		case <-ss.done:
			return status.Error(codes.Aborted, "session ended")
		}
	}
}

// registration checks an agent's register message (but for the caller's
// identity, which Connect checks) and turns it into its command, its
// timestamps on the coordinator's clock (clk).
func (s *Server) registration(reg *agentv1.Register, clk *clock) (fsm.RegisterHost, error) {
	if !hostIDRE.MatchString(reg.HostId) {
		return fsm.RegisterHost{}, status.Errorf(codes.InvalidArgument, "host_id %q: must be 1-63 lowercase letters, digits, '.' or '-'", reg.HostId)
	}
	if err := validBridges(reg.Bridges); err != nil {
		return fsm.RegisterHost{}, status.Errorf(codes.InvalidArgument, "bridges: %v", err)
	}
	host := state.Host{
		ID: reg.HostId, Kind: reg.HypervisorKind, AgentVersion: reg.AgentVersion, Labels: reg.Labels, PeerAddr: reg.PeerAddress,
		ManagedNetworks: reg.ManagedNetworks, Bridges: reg.Bridges,
		Capacity: state.Resources{VCPUs: reg.GetCapacity().GetVcpus(), MemoryMiB: reg.GetCapacity().GetMemoryMib(), DiskGiB: reg.GetCapacity().GetDiskGib()},
	}
	if err := validRegister(reg); err != nil {
		s.log.Warn("agent refused: invalid registration", "host", reg.HostId, "err", err)
		return fsm.RegisterHost{}, status.Errorf(codes.InvalidArgument, "register %q: %v", reg.HostId, err)
	}
	return fsm.RegisterHost{Host: host, Inventory: clk.observations(reg.Inventory)}, nil
}

// command turns one message of a registered agent's stream into the
// command it records: typ is empty for a message that records nothing,
// and an error ends the session.
func (s *Server) command(ss *session, m *agentv1.ConnectRequest) (typ string, body any, err error) {
	switch msg := m.Msg.(type) {
	case *agentv1.ConnectRequest_PowerEvent:
		typ, body = fsm.TypeObserve, fsm.Observe{HostID: ss.hostID, Epoch: ss.epoch, Observations: ss.clock.observations([]*agentv1.DomainState{msg.PowerEvent})}
	case *agentv1.ConnectRequest_Resync:
		o := fsm.Observe{HostID: ss.hostID, Epoch: ss.epoch, Full: true, Observations: ss.clock.observations(msg.Resync.Domains)}
		if msg.Resync.ObservedAt != nil {
			o.Taken = ss.clock.clamp(msg.Resync.ObservedAt.AsTime())
		}
		typ, body = fsm.TypeObserve, o
	case *agentv1.ConnectRequest_StepResult:
		f, ok := s.finish(ss, msg.StepResult)
		if !ok {
			return "", nil, nil
		}
		typ, body = fsm.TypeFinish, f
	case *agentv1.ConnectRequest_StepReport:
		r := msg.StepReport
		if r.State != agentv1.StepReportState_STEP_REPORT_STATE_FINISHED || r.Result == nil {
			if s.cfg.OnStepReport != nil {
				s.cfg.OnStepReport(ss.hostID, ss.epoch, r)
			}
			return "", nil, nil
		}
		f, ok := s.finish(ss, r.Result)
		if !ok {
			return "", nil, nil
		}
		typ, body = fsm.TypeFinish, f
	case *agentv1.ConnectRequest_CopyProgress:
		typ, body = fsm.TypeCopyProgress, copyProgress(ss.hostID, msg.CopyProgress)
	case *agentv1.ConnectRequest_GuestReport:
		r, ok := s.guestReport(ss, msg.GuestReport)
		if !ok {
			return "", nil, nil
		}
		typ, body = fsm.TypeGuestReport, r
	case *agentv1.ConnectRequest_ImageReport:
		if !s.catalogue() || !s.news(ss.hostID, msg.ImageReport) {
			return "", nil, nil
		}
		typ, body = fsm.TypeImagesHeld, imagesHeld(ss.hostID, msg.ImageReport)
	case *agentv1.ConnectRequest_Heartbeat:
		c, ok := s.hostClock(ss, msg.Heartbeat.GetSentAt(), s.cfg.Now())
		if !ok {
			return "", nil, nil
		}
		typ, body = fsm.TypeHostClock, c
	case *agentv1.ConnectRequest_Register:
		return "", nil, status.Error(codes.InvalidArgument, "register is only valid as the first message")
	default:
		return "", nil, nil
	}
	return typ, body, nil
}

// hostClock measures a host's clock skew from a message the agent sent at
// sent (nil from an agent that does not say) and we received at now, and returns the command that
// records it when it is to be recorded and every server keeps it.
func (s *Server) hostClock(ss *session, sent *timestamppb.Timestamp, now time.Time) (fsm.HostClock, bool) {
	// Below log version 13 not even measured: the first measurement once
	// the cluster is upgraded is then recorded.
	if sent == nil || sent.CheckValid() != nil || s.cfg.Store != nil && s.cfg.Store.LogVersion() < fsm.LogVersion13 {
		return fsm.HostClock{}, false
	}
	skew, record := ss.clock.measure(sent.AsTime(), now)
	if !record {
		return fsm.HostClock{}, false
	}
	return fsm.HostClock{HostID: ss.hostID, Epoch: ss.epoch, Skew: skew}, true
}

// queued is one report waiting to be committed: its command and, for an
// agent event, its kind and the agent's (clamped) time of it.
type queued struct {
	cmd  []byte
	kind string
	at   time.Time
}

// eventOf returns the kind and time of the agent event a command records,
// or a zero time for a command that records none.
func eventOf(body any) (string, time.Time) {
	switch b := body.(type) {
	case fsm.Observe:
		if b.Full {
			return "resync", b.Taken
		}
		var at time.Time
		for _, o := range b.Observations {
			if at.IsZero() || o.Time.Before(at) {
				at = o.Time
			}
		}
		return "power", at
	case fsm.GuestReport:
		return "guest", b.Time
	}
	return "", time.Time{}
}

// maxBatch bounds how many queued reports share one log entry.
const maxBatch = 256

// commitLoop commits an agent's reports in the order they came: whatever
// queued up while the previous entry was being committed goes into the
// next one, so a busy host costs one fsync per batch, not per report.
func (s *Server) commitLoop(ctx context.Context, ss *session, queue <-chan queued) error {
	for {
		var cmds []queued
		select {
		case c, ok := <-queue:
			if !ok {
				return nil // the stream ended and everything queued is recorded
			}
			cmds = append(cmds, c)
		case <-ss.done:
			return nil
		}
	drain:
		for len(cmds) < maxBatch {
			select {
			case c, ok := <-queue:
				if !ok {
					break drain
				}
				cmds = append(cmds, c)
			default:
				break drain
			}
		}
		s.mu.Lock()
		ss.busy = true
		s.mu.Unlock()
		encoded := make([][]byte, len(cmds))
		for i, c := range cmds {
			encoded[i] = c.cmd
		}
		errs, err := s.commit(ctx, encoded)
		now := s.cfg.Now()
		s.mu.Lock()
		ss.lastSeen, ss.busy = now, false
		s.mu.Unlock()
		if err == nil && s.cfg.EventVisible != nil {
			for _, c := range cmds {
				if !c.at.IsZero() {
					s.cfg.EventVisible(c.kind, max(now.Sub(c.at), 0))
				}
			}
		}
		if err != nil {
			// The log could not take the reports (e.g. leadership lost): end
			// the session so the agent reconnects and resends from scratch.
			return status.Errorf(codes.Unavailable, "recording reports: %v", err)
		}
		for _, e := range errs {
			if errors.Is(e, fsm.ErrStaleEpoch) {
				return status.Error(codes.Aborted, e.Error())
			}
		}
	}
}

// commit applies encoded commands as one entry and returns each one's refusal.
func (s *Server) commit(ctx context.Context, cmds [][]byte) ([]error, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entry := cmds[0]
	if len(cmds) > 1 {
		var err error
		if entry, err = fsm.EncodeBatch(s.cfg.Now(), cmds); err != nil {
			return nil, err
		}
	}
	v, err := s.cfg.Applier.Apply(ctx, entry)
	if len(cmds) == 1 {
		if err != nil && !isBusinessError(err) {
			return nil, err
		}
		return []error{err}, nil
	}
	if err != nil {
		return nil, err
	}
	results, _ := v.([]fsm.Result)
	errs := make([]error, len(results))
	for i, r := range results {
		errs[i] = r.Err
	}
	return errs, nil
}

// isBusinessError tells a refusal of one report (which changes nothing and
// is not the session's fault) from a failure of the log itself.
func isBusinessError(err error) bool {
	return errors.Is(err, fsm.ErrStaleEpoch) || errors.Is(err, fsm.ErrOperationDone) || errors.Is(err, fsm.ErrNotFound) ||
		errors.Is(err, fsm.ErrStaleStep) || errors.Is(err, fsm.ErrWrongHost)
}

// finish turns a step result into a Finish command; ok is false for a
// result that records nothing.
func (s *Server) finish(ss *session, r *agentv1.StepResult) (f fsm.Finish, ok bool) {
	if r.GetFault().GetCode() == "STALE_EPOCH" {
		// The step met a newer session than the one it was sent on: it did
		// not run, and the orchestrator re-sends it on the current session.
		return f, false
	}
	f = fsm.Finish{OperationID: r.OperationId, StepID: r.StepId, Succeeded: r.Succeeded, Fault: convert.FaultFromPB(r.Fault), HostID: ss.hostID}
	if r.State != nil {
		o := ss.clock.observations([]*agentv1.DomainState{r.State})[0]
		f.Observed = &o
	}
	if !r.Succeeded && f.Fault == nil {
		f.Fault = &state.Fault{Code: "UNKNOWN", Message: "the agent reported failure without a fault", Time: s.cfg.Now(), HostID: ss.hostID}
	}
	if r.Succeeded {
		f.Note = r.GetNote()
		if len(f.Note) > maxNote {
			f.Note = f.Note[:maxNote] // it is replicated and kept: bounded
		}
	}
	return f, true
}

// maxNote bounds a step result's note.
const maxNote = 256

// maxBridges bounds the bridges a host reports (each is kept in its record).
const maxBridges = 64

// validBridges checks the bridge names an agent reports.
func validBridges(bridges []string) error {
	if len(bridges) > maxBridges {
		return fmt.Errorf("at most %d, got %d", maxBridges, len(bridges))
	}
	for _, b := range bridges {
		if err := ipam.ValidateBridge(b); err != nil {
			return err
		}
	}
	return nil
}

// Guest report fields: tokens the agent validated, checked again here
// (the guest is untrusted, and so, for these, is the agent).
var (
	guestTokenRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	guestReasonRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// optional: v is empty or matches re.
func optional(re *regexp.Regexp, v string) bool { return v == "" || re.MatchString(v) }

var guestStates = map[agentv1.GuestState]lifecycle.Guest{
	agentv1.GuestState_GUEST_STATE_BOOTING: lifecycle.GuestBooting,
	agentv1.GuestState_GUEST_STATE_READY:   lifecycle.GuestReady,
	agentv1.GuestState_GUEST_STATE_FAILED:  lifecycle.GuestFailed,
}

// guestReport turns an agent's GuestReport into its command; ok is false
// for one that is malformed, or that the cluster cannot record yet (every
// server must be at log version 4, or the entry would be refused and the
// session with it).
func (s *Server) guestReport(ss *session, r *agentv1.GuestReport) (fsm.GuestReport, bool) {
	st, known := guestStates[r.GetState()]
	ok := known && r.GetObservedAt() != nil && optional(guestTokenRE, r.GetStage()) &&
		optional(guestReasonRE, r.GetReason()) && optional(guestTokenRE, r.GetGuestVersion())
	if !ok {
		s.log.Warn("malformed guest report dropped", "host", ss.hostID, "instance", r.GetInstanceId(), "state", r.GetState())
		return fsm.GuestReport{}, false
	}
	if s.cfg.Store != nil && s.cfg.Store.LogVersion() < fsm.LogVersion4 {
		return fsm.GuestReport{}, false
	}
	c := fsm.GuestReport{HostID: ss.hostID, Epoch: ss.epoch, InstanceID: r.GetInstanceId(), State: st, Stage: r.GetStage(),
		Reason: r.GetReason(), Version: r.GetGuestVersion(), Time: ss.clock.clamp(r.GetObservedAt().AsTime())}
	side := state.GuestSide{Protocol: r.GetProtocol(), Boot: r.GetBootId(), OS: r.GetOs(), OSVersion: r.GetOsVersion(),
		Kernel: r.GetKernel(), Unresponsive: r.GetUnresponsive()}
	if side.Protocol > 2 || !optional(guestReasonRE, side.Boot) || !optional(guestTokenRE, side.OS) ||
		!optional(guestTokenRE, side.OSVersion) || !optional(guestTokenRE, side.Kernel) {
		s.log.Warn("malformed guest report dropped", "host", ss.hostID, "instance", r.GetInstanceId(), "protocol", side.Protocol)
		return fsm.GuestReport{}, false
	}
	if s.cfg.Store == nil || s.cfg.Store.LogVersion() >= fsm.LogVersion5 {
		c.Side = side // else: a server of the previous version would not keep it
	}
	return c, true
}
