// Package executor runs the coordinator's steps against the hypervisor
// driver (and, for disk moves, a Mover), each step id at most once, one step
// per instance at a time.
package executor

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/stepcheck"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Fault codes the executor reports, besides the coordinator's own.
const (
	FaultAgentRestarted        = "AGENT_RESTARTED"
	FaultStaleEpoch            = "STALE_EPOCH"
	FaultInvalidSpec           = "INVALID_SPEC"
	FaultImageNotFound         = "IMAGE_NOT_FOUND"
	FaultInvalidState          = "INVALID_STATE"
	FaultDomainNotFound        = "DOMAIN_NOT_FOUND"
	FaultHypervisorUnavailable = "HYPERVISOR_UNAVAILABLE"
	FaultDeadlineExceeded      = "DEADLINE_EXCEEDED"
	FaultHypervisorError       = "HYPERVISOR_ERROR"
	FaultInvalidStep           = "INVALID_STEP"
	FaultAgentError            = "AGENT_ERROR"
	FaultPeerUnavailable       = "PEER_UNAVAILABLE"
	FaultDiskCorrupt           = "DISK_CORRUPT"
	FaultInvalidDisk           = "INVALID_DISK"
	FaultPeerRefused           = "PEER_REFUSED"
	FaultInsufficientDisk      = "INSUFFICIENT_DISK"
	FaultNetworkUnavailable    = "NETWORK_UNAVAILABLE"
	// The guest channel's: no guest side that takes commands, the guest
	// side refused or failed, the channel closed before the reply.
	FaultGuestUnsupported = "GUEST_UNSUPPORTED"
	FaultGuestFailed      = "GUEST_FAILED"
	FaultGuestUnavailable = "GUEST_UNAVAILABLE"
)

// Errors a Mover wraps (with %w) so that its failures are classified. They
// live here, not in the transfer package, so that the executor does not
// depend on how disks are moved.
var (
	// ErrPeerUnavailable: the other agent could not be reached. Transient:
	// the coordinator may try the step again.
	ErrPeerUnavailable = errors.New("peer agent unavailable")
	// ErrDiskCorrupt: the copy did not match the source's digest. Transient:
	// another pull may arrive intact.
	ErrDiskCorrupt = errors.New("disk copy corrupt")
	// ErrPeerRefused: the source agent refused the pull (no offer for this
	// host and token: expired, revoked, or forgotten by a restart).
	// Permanent: only a new offer helps.
	ErrPeerRefused = errors.New("peer agent refused the disk pull")
)

// offerLifetime is how long an offered disk stays offered at least: past
// the offer step, so that a failed import can pull again; any other step
// on the instance revokes it sooner.
const offerLifetime = 30 * time.Minute

// Mover is the agent's side of moving an instance's disk between hosts.
type Mover interface {
	// Offer lets toHostID pull a layer of the instance's disk with token
	// until the deadline.
	Offer(ctx context.Context, instanceID string, layer hypervisor.DiskLayer, token, toHostID string, until time.Time) error
	// Import pulls the whole disk from the peer agent, verifies it and
	// defines the domain (shut off): a cold move.
	Import(ctx context.Context, spec hypervisor.DomainSpec, fromHostID, fromAddr, token string) error
	// Receive pulls a layer of the disk from the peer agent, verifies it
	// and stages it (the driver's ReceiveDisk): a resize.
	Receive(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token string) error
	// Revoke withdraws the instance's offers and ends pulls of its disk,
	// waiting for them, before anything else is done to the domain.
	Revoke(instanceID string)
	// FetchImage pulls image name from the peer agent into the image
	// directory, verified (and, sum set, with that checksum): held already
	// is success.
	FetchImage(ctx context.Context, name, sum, fromHostID, fromAddr string) error
}

// Defaults for zero Config fields.
const (
	DefaultGracefulTimeout = 10 * time.Minute
	// DefaultStepTimeout bounds a step that carries no deadline, so that a
	// stuck hypervisor call cannot hold an instance's lock forever.
	DefaultStepTimeout = time.Hour
	// statusTimeout bounds the state read after a step; it runs on its own
	// clock because the step's deadline may be what ended the step.
	statusTimeout = 10 * time.Second
	// forceMargin is, at most, what a forced STOP keeps of its deadline for
	// destroying the domain after the grace.
	forceMargin = 30 * time.Second
)

// Config configures an Executor.
type Config struct {
	HostID string // put in every fault
	Driver hypervisor.Driver
	Store  *stepstore.Store
	Logger *slog.Logger // default slog.Default()
	// GracefulTimeout is the STOP grace when the step carries none.
	GracefulTimeout time.Duration
	// Mover runs OFFER_DISK and IMPORT_DISK; nil refuses them.
	Mover Mover
	// DiskReserve is the free space, in bytes, a PREFLIGHT keeps in the
	// disk directory beyond what the step's disk needs at once; zero keeps
	// none.
	DiskReserve uint64
	// Guests runs commands inside guests (SET_PASSWORD, DECOMMISSION); nil
	// refuses them (a decommission is then skipped).
	Guests Guests
}

// Guests sends commands to guests over their guest channels
// (agent/guestchan.Watcher). Arguments may be secrets: an implementation
// never logs them nor puts them in an error.
type Guests interface {
	Command(ctx context.Context, instanceID, verb string, args ...string) ([]string, error)
}

// Executor runs steps. It is safe for concurrent use.
type Executor struct {
	cfg Config
	log *slog.Logger

	// life outlives sessions: a step keeps running when the stream breaks
	// and is only abandoned when the agent shuts down.
	life    context.Context
	endLife context.CancelFunc
	wg      sync.WaitGroup

	mu        sync.Mutex
	running   map[string]bool          // step keys (see stepKey) running in this process
	instLocks map[string]*instanceLock // per-instance lock, dropped when unused
}

// instanceLock is a lock a waiter can give up on when its context ends.
type instanceLock struct {
	sem  chan struct{}
	refs int
}

// New returns an Executor. Close it to stop running steps.
func New(cfg Config) (*Executor, error) {
	if cfg.Driver == nil || cfg.Store == nil {
		return nil, errors.New("executor: Driver and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GracefulTimeout <= 0 {
		cfg.GracefulTimeout = DefaultGracefulTimeout
	}
	e := &Executor{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "agent/executor", "host", cfg.HostID),
		running:   map[string]bool{},
		instLocks: map[string]*instanceLock{},
	}
	e.life, e.endLife = context.WithCancel(context.Background())
	return e, nil
}

// Close cancels the steps still running and waits for them. Their records
// stay "started", so if they are sent again after a restart they are
// reported as interrupted, never re-run.
func (e *Executor) Close() {
	// Under mu, so that Execute either sees the end or is waited for.
	e.mu.Lock()
	e.endLife()
	e.mu.Unlock()
	e.wg.Wait()
}

// stepKey is what the journal and the running set know a step by: its step
// id, or, from a coordinator too old to send one, its operation id (which
// was then the unit of at-most-once).
func stepKey(stepID, opID string) string {
	if stepID != "" {
		return stepID
	}
	return opID
}

// Execute runs the step unless its step id has run or is running, and
// returns its result; it blocks until the step ends. sessionEpoch is the
// host epoch of the session the step arrived on.
//
// It returns nil when the step is already running in this process: the
// call that started it returns the result. A finished step's recorded
// result is returned again without touching the driver. Two step ids of one
// operation (say, attempt 2 after a transient failure) are two steps.
func (e *Executor) Execute(step *agentv1.RunStep, sessionEpoch uint64) *agentv1.StepResult {
	opID := step.GetOperationId()
	key := stepKey(step.GetStepId(), opID)
	action := resolveAction(step)
	log := e.log.With("operation", opID, "step", key, "instance", step.GetInstanceId(),
		"kind", step.GetKind().String(), "action", action.String())

	if opID == "" || step.GetInstanceId() == "" {
		// Nothing can be recorded without an id; the coordinator never sends this.
		return e.fail(step, FaultInvalidStep, "step without operation or instance id", nil)
	}

	e.mu.Lock()
	if e.running[key] {
		e.mu.Unlock()
		log.Debug("step already running; its result will be sent when done")
		return nil
	}
	if e.life.Err() != nil {
		e.mu.Unlock()
		return nil // shutting down: the step is re-sent to the next agent process
	}
	rec, err := e.cfg.Store.Get(key)
	if err != nil {
		e.mu.Unlock()
		log.Error("reading the step journal failed", "err", err)
		return e.fail(step, FaultAgentError, err.Error(), nil)
	}
	switch rec.State {
	case stepstore.Finished:
		e.mu.Unlock()
		log.Debug("step already finished; sending its result again")
		return withStepID(rec.Result, step.GetStepId())
	}
	stale := step.GetHostEpoch() != sessionEpoch
	if stale && rec.State != stepstore.Started {
		e.mu.Unlock()
		// Not recorded: nothing ran, and the step may come again under the
		// right epoch.
		log.Warn("refusing step of a stale epoch", "step_epoch", step.GetHostEpoch(), "epoch", sessionEpoch)
		return e.fail(step, FaultStaleEpoch,
			fmt.Sprintf("step issued under host epoch %d, the session's epoch is %d", step.GetHostEpoch(), sessionEpoch), nil)
	}
	e.running[key] = true
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.done(key)
	if rec.State == stepstore.Started {
		// Recorded as started, not running here: a previous agent process
		// began it and died. The hypervisor is asked what it did; a stale
		// epoch only stops it from running again.
		return e.run(log, key, action, step, &interruption{rec: rec, stale: stale, sessionEpoch: sessionEpoch})
	}
	return e.run(log, key, action, step, nil)
}

// Report says what this agent knows of a step, for a coordinator that lost
// track of it (a new leader). It never waits for a running step. A step
// recorded as started but not running in this process was interrupted by a
// restart, and the hypervisor says what came of it (package stepcheck):
// done is recorded and reported FINISHED with its success; not done (or
// partly) is NOT_DONE, recording nothing, so that the step sent again runs
// again; unknowable is recorded AGENT_RESTARTED and reported FINISHED,
// exactly as if the step had been sent again. Report returns nil when it
// cannot say (the agent is shutting down, or the journal cannot be read);
// the coordinator asks again, of this process or the next.
func (e *Executor) Report(stepID, operationID string) *agentv1.StepReport {
	key := stepKey(stepID, operationID)
	log := e.log.With("operation", operationID, "step", key)
	rep := &agentv1.StepReport{StepId: stepID, OperationId: operationID, State: agentv1.StepReportState_STEP_REPORT_STATE_UNKNOWN}
	if key == "" {
		return rep
	}
	// The running set and the journal are read under one lock, as Execute
	// reads them: a step between the two would otherwise look interrupted.
	e.mu.Lock()
	if e.running[key] {
		e.mu.Unlock()
		rep.State = agentv1.StepReportState_STEP_REPORT_STATE_RUNNING
		return rep
	}
	if e.life.Err() != nil {
		e.mu.Unlock()
		return nil
	}
	rec, err := e.cfg.Store.Get(key)
	if err != nil {
		e.mu.Unlock()
		log.Error("reading the step journal failed; not answering the query", "err", err)
		return nil
	}
	switch rec.State {
	case stepstore.Unknown:
		e.mu.Unlock()
	case stepstore.Finished:
		e.mu.Unlock()
		rep.State, rep.Result = agentv1.StepReportState_STEP_REPORT_STATE_FINISHED, withStepID(rec.Result, stepID)
	case stepstore.Started:
		e.running[key] = true
		e.wg.Add(1)
		e.mu.Unlock()
		defer e.done(key)
		log = log.With("instance", rec.InstanceID)
		// Dated with the epoch it ran under: no session epoch comes with a query.
		step := &agentv1.RunStep{
			OperationId: cmp.Or(operationID, rec.OperationID), StepId: stepID,
			InstanceId: rec.InstanceID, HostEpoch: rec.HostEpoch, Kind: rec.Kind, Action: rec.Action,
		}
		ctx, cancel := context.WithTimeout(e.life, statusTimeout)
		d := stepcheck.Decide(resolveAction(step), stepcheck.Observe(ctx, e.cfg.Driver, rec.InstanceID))
		cancel()
		switch {
		case d.Verdict == stepcheck.Done:
			rep.State, rep.Result = agentv1.StepReportState_STEP_REPORT_STATE_FINISHED, e.doneBefore(log, key, step, d)
		case (d.Verdict == stepcheck.NotDone || d.Verdict == stepcheck.Partly) && rec.Reruns < maxReruns:
			// Nothing is recorded: the step, sent again, undoes what it
			// left and runs (Execute decides again, under the instance's lock).
			log.Info("interrupted step not done; asking for it again", "verdict", d.Verdict.String(), "why", d.Why)
			rep.State = agentv1.StepReportState_STEP_REPORT_STATE_NOT_DONE
		default:
			rep.State, rep.Result = agentv1.StepReportState_STEP_REPORT_STATE_FINISHED, e.interrupted(log, key, rec, step, d)
		}
	}
	log.Debug("step queried", "state", rep.GetState().String())
	return rep
}

// interrupted records and returns the result of a step a previous agent
// process started and never finished. The caller holds the step's place in
// the running set.
func (e *Executor) interrupted(log *slog.Logger, key string, rec stepstore.Record, step *agentv1.RunStep, d stepcheck.Decision) *agentv1.StepResult {
	what := rec.Kind.String()
	if rec.Action != agentv1.StepAction_STEP_ACTION_UNSPECIFIED {
		what = rec.Action.String()
	}
	log.Warn("step was interrupted by an agent restart and its outcome cannot be known; not re-running it",
		"started", rec.StartTime, "verdict", d.Verdict.String(), "why", d.Why, "reruns", rec.Reruns)
	res := e.fail(step, FaultAgentRestarted,
		fmt.Sprintf("the step was interrupted: the agent restarted while running %s (started %s), and its outcome cannot be known (%s); the domain's state is attached",
			what, rec.StartTime.Format(time.RFC3339), d.Why),
		e.status(step.GetInstanceId()))
	return e.record(log, key, res)
}

// bootSettle is how long a domain found paused by an interrupted start
// is watched for libvirtd finishing that start itself.
const bootSettle = 3 * time.Second

// waitRunning reports whether the domain is (or, within d, becomes) running.
func (e *Executor) waitRunning(ctx context.Context, id string, d time.Duration) bool {
	until := time.Now().Add(d)
	for {
		if st, err := e.cfg.Driver.Status(ctx, id); err == nil && st.State == hypervisor.PowerRunning {
			return true
		}
		if !time.Now().Before(until) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond): // polling the hypervisor's state
		}
	}
}

// interruption is a step found begun by a previous agent process.
type interruption struct {
	rec          stepstore.Record
	stale        bool // sent under another epoch than the session's
	sessionEpoch uint64
}

// maxReruns is how often an interrupted step is run again: once. A rerun
// that is itself interrupted is decided again, but not run a third time.
const maxReruns = 1

// doneBefore records the success of an interrupted step whose effect the
// hypervisor shows: its real result, the domain's state now.
func (e *Executor) doneBefore(log *slog.Logger, key string, step *agentv1.RunStep, d stepcheck.Decision) *agentv1.StepResult {
	log.Info("interrupted step had taken effect; reporting it done", "why", d.Why)
	return e.record(log, key, &agentv1.StepResult{
		OperationId: step.GetOperationId(),
		StepId:      step.GetStepId(),
		HostEpoch:   step.GetHostEpoch(),
		Succeeded:   true,
		State:       e.status(step.GetInstanceId()),
		Note:        "done before the agent restarted: " + d.Why,
	})
}

// settle decides, under the instance's lock, what becomes of a step a
// previous agent process began (rec): its result when it is done or cannot
// be known, or nil when it is to run (again), its partial effect undone.
func (e *Executor) settle(ctx context.Context, log *slog.Logger, key string, action agentv1.StepAction, step *agentv1.RunStep, in *interruption) *agentv1.StepResult {
	rec := in.rec
	octx, cancel := context.WithTimeout(ctx, statusTimeout)
	d := stepcheck.Decide(action, stepcheck.Observe(octx, e.cfg.Driver, step.GetInstanceId()))
	cancel()
	switch d.Verdict {
	case stepcheck.Done:
		return e.doneBefore(log, key, step, d)
	case stepcheck.Unknowable:
		return e.interrupted(log, key, rec, step, d)
	}
	if in.stale {
		// Not recorded: it may come again under the right epoch and run then.
		return e.fail(step, FaultStaleEpoch,
			fmt.Sprintf("step issued under host epoch %d, the session's epoch is %d", step.GetHostEpoch(), in.sessionEpoch), e.status(step.GetInstanceId()))
	}
	if err := e.cfg.Store.Rerun(key, maxReruns); err != nil {
		log.Warn("interrupted step not run again", "err", err)
		if errors.Is(err, stepstore.ErrRerunLimit) {
			d.Why += "; it was run again once already"
		}
		return e.interrupted(log, key, rec, step, d)
	}
	if d.Verdict == stepcheck.Partly {
		log.Info("interrupted step partly done; undoing it before running it again", "why", d.Why)
		if err := e.undo(ctx, d.Undo, step.GetInstanceId()); err != nil {
			log.Warn("undoing the partial effect failed", "err", err)
			return e.record(log, key, e.fail(step, faultCode(err),
				fmt.Sprintf("the step was interrupted by an agent restart (%s) and undoing its partial effect failed: %v", d.Why, err),
				e.status(step.GetInstanceId())))
		}
	}
	log.Info("running an interrupted step again", "verdict", d.Verdict.String(), "why", d.Why)
	return nil
}

// undo removes a partial effect.
func (e *Executor) undo(ctx context.Context, u stepcheck.Undo, id string) error {
	switch u {
	case stepcheck.UndoDelete:
		if err := e.cfg.Driver.Delete(ctx, id); err != nil {
			return fmt.Errorf("removing what the interrupted step left of %s: %w", id, err)
		}
	case stepcheck.UndoResume:
		// libvirtd may still be finishing the start the dead agent asked
		// for (it resumes the vCPUs as its last act): give it a moment,
		// so that the two resumes do not race.
		if e.waitRunning(ctx, id, bootSettle) {
			return nil
		}
		if err := e.cfg.Driver.Resume(ctx, id); err != nil && !e.waitRunning(ctx, id, 0) {
			return fmt.Errorf("finishing the boot the interrupted step began of %s: %w", id, err)
		}
	}
	return nil
}

// withStepID fills in the step id of a result recorded without one (by an
// agent of the previous version): every result names its step.
func withStepID(res *agentv1.StepResult, stepID string) *agentv1.StepResult {
	if res.GetStepId() == "" && stepID != "" {
		res.StepId = stepID
	}
	return res
}

func (e *Executor) done(key string) {
	e.mu.Lock()
	delete(e.running, key)
	e.mu.Unlock()
	e.wg.Done()
}

// run runs a new step under its deadline and the instance's lock.
// interrupted, when set, is a step a previous agent process began: the
// hypervisor is asked what came of it (see settle).
func (e *Executor) run(log *slog.Logger, key string, action agentv1.StepAction, step *agentv1.RunStep, interrupted *interruption) *agentv1.StepResult {
	deadline := time.Now().Add(DefaultStepTimeout)
	if step.GetDeadline() != nil {
		deadline = step.GetDeadline().AsTime()
	}
	ctx, cancel := context.WithDeadline(e.life, deadline)
	defer cancel()

	id := step.GetInstanceId()
	unlock, err := e.lockInstance(ctx, id)
	if err != nil {
		if e.life.Err() != nil {
			return nil // shutting down before the step began: nothing to record
		}
		log.Warn("step ended waiting for another step on the instance", "err", err)
		return e.record(log, key, e.fail(step, FaultDeadlineExceeded,
			fmt.Sprintf("waiting for another step on instance %s: %v", id, err), e.status(id)))
	}
	defer unlock()
	if ctx.Err() != nil {
		// The lock and the deadline were both ready; do not start late.
		if e.life.Err() != nil {
			return nil
		}
		return e.record(log, key, e.fail(step, FaultDeadlineExceeded,
			fmt.Sprintf("step deadline %s passed before it could start", deadline.Format(time.RFC3339)), e.status(id)))
	}

	if interrupted != nil {
		if res := e.settle(ctx, log, key, action, step, interrupted); res != nil {
			return res
		}
	} else if _, fresh, err := e.cfg.Store.Begin(key, stepstore.Step{
		OperationID: step.GetOperationId(), Kind: step.GetKind(), Action: action,
		InstanceID: id, HostEpoch: step.GetHostEpoch(),
	}); err != nil {
		// Without the "started" record the at-most-once promise cannot be
		// kept across a restart, so the driver is not called.
		log.Error("recording the step's start failed", "err", err)
		return e.fail(step, FaultAgentError, err.Error(), e.status(id))
	} else if !fresh {
		// Only this process writes the journal and it runs each step id
		// once; reaching here means the journal changed under it.
		return e.fail(step, FaultAgentError, "step already recorded in the journal", e.status(id))
	}

	log.Info("running step", "deadline", deadline)
	start := time.Now()
	err = e.call(withStep(ctx, StepIdentity{OperationID: step.GetOperationId(), StepID: step.GetStepId(), InstanceID: id}), action, deadline, step)
	if err != nil && e.life.Err() != nil {
		// The agent is shutting down mid-step. The record stays "started":
		// the next process reports the step as interrupted.
		log.Warn("step abandoned by agent shutdown", "err", err)
		return nil
	}
	var skip skipped
	if errors.As(err, &skip) {
		err = nil // done, but without its work: the note says why
	}
	if err != nil && errors.Is(err, hypervisor.ErrUnavailable) {
		if res := e.afterLostHypervisor(ctx, log, key, action, step, err); res != nil {
			return res
		}
	}
	if err != nil {
		code := faultCode(err)
		log.Warn("step failed", "fault", code, "err", err, "took", time.Now().Sub(start))
		return e.record(log, key, e.fail(step, code, err.Error(), e.status(id)))
	}
	log.Info("step succeeded", "took", time.Now().Sub(start), "note", skip.note)
	return e.record(log, key, &agentv1.StepResult{
		OperationId: step.GetOperationId(),
		StepId:      step.GetStepId(),
		HostEpoch:   step.GetHostEpoch(),
		Succeeded:   true,
		State:       e.status(id),
		Note:        skip.note,
	})
}

// hypervisorReturn bounds how long a step whose hypervisor went away (a
// libvirtd restart) waits for it to answer again, so that what the step
// did can be read; a restart takes seconds.
const hypervisorReturn = time.Minute

// afterLostHypervisor settles a step whose driver call failed because the
// hypervisor went away: the call may have taken effect with its answer
// lost (libvirtd restarted under a create: the guest runs, the answer
// never came). Once the hypervisor answers again, within the step's
// deadline and hypervisorReturn, its state is decided as an interrupted
// step's is: done is the step's success; a partial effect is undone, so
// that the attempt the coordinator sends next (the fault is transient)
// starts clean. It returns nil when the caller reports the fault.
func (e *Executor) afterLostHypervisor(ctx context.Context, log *slog.Logger, key string, action agentv1.StepAction, step *agentv1.RunStep, cause error) *agentv1.StepResult {
	id := step.GetInstanceId()
	wctx, cancel := context.WithTimeout(ctx, hypervisorReturn)
	defer cancel()
	for {
		if _, err := e.cfg.Driver.Status(wctx, id); !errors.Is(err, hypervisor.ErrUnavailable) {
			break
		}
		select {
		case <-wctx.Done():
			log.Warn("hypervisor did not come back within the step's time", "err", cause)
			return nil
		case <-time.After(200 * time.Millisecond): // polling the hypervisor's connection
		}
	}
	octx, ocancel := context.WithTimeout(ctx, statusTimeout)
	d := stepcheck.Decide(action, stepcheck.Observe(octx, e.cfg.Driver, id))
	ocancel()
	switch d.Verdict {
	case stepcheck.Done:
		log.Info("the hypervisor went away under the step, which had taken effect", "why", d.Why, "err", cause)
		return e.record(log, key, &agentv1.StepResult{
			OperationId: step.GetOperationId(),
			StepId:      step.GetStepId(),
			HostEpoch:   step.GetHostEpoch(),
			Succeeded:   true,
			State:       e.status(id),
			Note:        "done, though the hypervisor's answer was lost: " + d.Why,
		})
	case stepcheck.Partly:
		log.Info("the hypervisor went away under the step; undoing its partial effect", "why", d.Why, "err", cause)
		if err := e.undo(ctx, d.Undo, id); err != nil {
			log.Warn("undoing the partial effect failed", "err", err)
		}
	}
	return nil
}

// resolveAction is the step's action; a coordinator too old to send one
// meant the action its operation's kind names. UNSPECIFIED if neither says.
func resolveAction(step *agentv1.RunStep) agentv1.StepAction {
	if a := step.GetAction(); a != agentv1.StepAction_STEP_ACTION_UNSPECIFIED {
		return a
	}
	return kindActions[step.GetKind()]
}

// kindActions are the one-step operations an older coordinator sent by
// kind alone (it sent a preemption as DELETE).
var kindActions = map[flotillav1.OperationKind]agentv1.StepAction{
	flotillav1.OperationKind_OPERATION_KIND_CREATE:       agentv1.StepAction_STEP_ACTION_CREATE,
	flotillav1.OperationKind_OPERATION_KIND_START:        agentv1.StepAction_STEP_ACTION_START,
	flotillav1.OperationKind_OPERATION_KIND_STOP:         agentv1.StepAction_STEP_ACTION_STOP,
	flotillav1.OperationKind_OPERATION_KIND_RESTART:      agentv1.StepAction_STEP_ACTION_RESTART,
	flotillav1.OperationKind_OPERATION_KIND_HARD_RESTART: agentv1.StepAction_STEP_ACTION_HARD_RESTART,
	flotillav1.OperationKind_OPERATION_KIND_PAUSE:        agentv1.StepAction_STEP_ACTION_PAUSE,
	flotillav1.OperationKind_OPERATION_KIND_UNPAUSE:      agentv1.StepAction_STEP_ACTION_UNPAUSE,
	flotillav1.OperationKind_OPERATION_KIND_SUSPEND:      agentv1.StepAction_STEP_ACTION_SUSPEND,
	flotillav1.OperationKind_OPERATION_KIND_RESUME:       agentv1.StepAction_STEP_ACTION_RESUME,
	flotillav1.OperationKind_OPERATION_KIND_DELETE:       agentv1.StepAction_STEP_ACTION_DELETE,
}

// call maps the step's action to the driver (or Mover) method. deadline is
// the step's.
func (e *Executor) call(ctx context.Context, action agentv1.StepAction, deadline time.Time, step *agentv1.RunStep) error {
	d, id := e.cfg.Driver, step.GetInstanceId()
	switch action {
	case agentv1.StepAction_STEP_ACTION_OFFER_DISK, agentv1.StepAction_STEP_ACTION_IMPORT_DISK,
		agentv1.StepAction_STEP_ACTION_RECEIVE_DISK, agentv1.StepAction_STEP_ACTION_ADOPT_DISK,
		agentv1.StepAction_STEP_ACTION_DROP_ORIGINAL, agentv1.StepAction_STEP_ACTION_GROW_DISK,
		// A frozen base does not change, whatever the domain does: a pull
		// of it may go on (FREEZE_DISK of a frozen disk is a no-op).
		agentv1.StepAction_STEP_ACTION_FREEZE_DISK, agentv1.StepAction_STEP_ACTION_REFREEZE_DISK,
		agentv1.StepAction_STEP_ACTION_PREFLIGHT,   // a preflight changes nothing
		agentv1.StepAction_STEP_ACTION_FETCH_IMAGE: // nor does a fetch, to the domain
	default:
		if e.cfg.Mover != nil {
			// No peer may go on reading a disk the domain is about to use or lose.
			e.cfg.Mover.Revoke(id)
		}
	}
	switch action {
	case agentv1.StepAction_STEP_ACTION_PREFLIGHT:
		spec, err := domainSpec(step)
		if err != nil {
			return err
		}
		// A create (or a resize's copy) makes a disk; a start or a hard
		// restart boots the one there is.
		boot := step.GetKind() != flotillav1.OperationKind_OPERATION_KIND_CREATE &&
			step.GetKind() != flotillav1.OperationKind_OPERATION_KIND_RESIZE
		return d.Preflight(ctx, spec, boot, e.cfg.DiskReserve)
	case agentv1.StepAction_STEP_ACTION_CREATE:
		spec, err := domainSpec(step)
		if err != nil {
			return err
		}
		return d.Create(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_START, agentv1.StepAction_STEP_ACTION_RESUME:
		// Start restores from the managed save image when there is one.
		return d.Start(ctx, id)
	case agentv1.StepAction_STEP_ACTION_STOP:
		grace := e.cfg.GracefulTimeout
		if g := step.GetGracefulTimeout(); g != nil && g.AsDuration() > 0 {
			grace = g.AsDuration()
		}
		if dl, ok := ctx.Deadline(); ok && step.GetForce() {
			// A grace running past the deadline would fail the step before
			// the forced power-off it asked for; cut the grace short instead.
			remaining := time.Until(dl)
			if limit := remaining - min(remaining/10, forceMargin); grace > limit {
				grace = max(limit, 0)
			}
		}
		return d.Shutdown(ctx, id, grace, step.GetForce())
	case agentv1.StepAction_STEP_ACTION_RESTART:
		return d.Reboot(ctx, id, false)
	case agentv1.StepAction_STEP_ACTION_HARD_RESTART:
		return d.Reboot(ctx, id, true)
	case agentv1.StepAction_STEP_ACTION_PAUSE:
		return d.Pause(ctx, id)
	case agentv1.StepAction_STEP_ACTION_UNPAUSE:
		return d.Resume(ctx, id)
	case agentv1.StepAction_STEP_ACTION_SUSPEND:
		return d.Save(ctx, id)
	case agentv1.StepAction_STEP_ACTION_DELETE:
		return d.Delete(ctx, id)
	case agentv1.StepAction_STEP_ACTION_UPDATE:
		return d.SetTitle(ctx, id, step.GetName())
	case agentv1.StepAction_STEP_ACTION_OFFER_DISK:
		if e.cfg.Mover == nil {
			return errNoMover
		}
		if err := e.checkPeer(step, false); err != nil {
			return err
		}
		until := time.Now().Add(offerLifetime)
		if deadline.After(until) {
			until = deadline
		}
		layer, err := LayerFromPB(step.GetDiskLayer())
		if err != nil {
			return err
		}
		return e.cfg.Mover.Offer(ctx, id, layer, step.GetOfferToken(), step.GetPeerHostId(), until)
	case agentv1.StepAction_STEP_ACTION_IMPORT_DISK:
		if e.cfg.Mover == nil {
			return errNoMover
		}
		if err := e.checkPeer(step, true); err != nil {
			return err
		}
		spec, err := domainSpec(step)
		if err != nil {
			return err
		}
		// Checked here so that an invalid spec from the Mover can only
		// mean the pulled disk was refused.
		if err := hypervisor.ValidateSpec(spec); err != nil {
			return err
		}
		err = e.cfg.Mover.Import(ctx, spec, step.GetPeerHostId(), step.GetPeerAddress(), step.GetOfferToken())
		if errors.Is(err, hypervisor.ErrInvalidSpec) {
			return invalidDisk{err}
		}
		return err
	case agentv1.StepAction_STEP_ACTION_RECEIVE_DISK:
		if e.cfg.Mover == nil {
			return errNoMover
		}
		if err := e.checkPeer(step, true); err != nil {
			return err
		}
		layer, err := LayerFromPB(step.GetDiskLayer())
		if err != nil {
			return err
		}
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		err = e.cfg.Mover.Receive(ctx, spec, layer, step.GetPeerHostId(), step.GetPeerAddress(), step.GetOfferToken())
		if errors.Is(err, hypervisor.ErrInvalidSpec) {
			return invalidDisk{err}
		}
		return err
	case agentv1.StepAction_STEP_ACTION_FREEZE_DISK:
		return d.FreezeDisk(ctx, id)
	case agentv1.StepAction_STEP_ACTION_REFREEZE_DISK:
		return d.RefreezeDisk(ctx, id)
	case agentv1.StepAction_STEP_ACTION_THAW_DISK:
		return d.ThawDisk(ctx, id)
	case agentv1.StepAction_STEP_ACTION_ADOPT_DISK:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.AdoptDisk(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_RESHAPE:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.Reshape(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_UNSHAPE:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.Unshape(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_DROP_ORIGINAL:
		return d.DropOriginal(ctx, id)
	case agentv1.StepAction_STEP_ACTION_UPGRADE_DISK:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.UpgradeDisk(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_ROLLBACK_DISK:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.Unshape(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_DROP_SNAPSHOT:
		return d.DropOriginal(ctx, id)
	case agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY:
		return e.awaitHealthy(ctx, id, time.Now())
	case agentv1.StepAction_STEP_ACTION_RELEASE_DOMAIN:
		return d.Release(ctx, id)
	case agentv1.StepAction_STEP_ACTION_DEFINE_DOMAIN:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.Define(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_GROW_DISK:
		spec, err := domainSpec(step)
		if err != nil {
			return err
		}
		return d.GrowDisk(ctx, id, spec.DiskGiB)
	case agentv1.StepAction_STEP_ACTION_REBUILD_DISK:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.RebuildDisk(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_RESCUE_DOMAIN:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.RescueDomain(ctx, spec, step.GetImage())
	case agentv1.StepAction_STEP_ACTION_UNRESCUE_DOMAIN:
		spec, err := validSpec(step)
		if err != nil {
			return err
		}
		return d.UnrescueDomain(ctx, spec)
	case agentv1.StepAction_STEP_ACTION_BUNDLE_DISK:
		return d.BundleDisk(ctx, id, step.GetImage(), step.GetOperationId())
	case agentv1.StepAction_STEP_ACTION_FETCH_IMAGE:
		if e.cfg.Mover == nil {
			return errNoMover
		}
		if err := e.checkPeer(step, true); err != nil {
			return err
		}
		if err := hypervisor.ValidateImageName(step.GetImage()); err != nil {
			return err
		}
		err := e.cfg.Mover.FetchImage(ctx, step.GetImage(), step.GetImageSha256(), step.GetPeerHostId(), step.GetPeerAddress())
		if errors.Is(err, hypervisor.ErrInvalidSpec) {
			return invalidDisk{err}
		}
		return err
	case agentv1.StepAction_STEP_ACTION_SET_PASSWORD:
		return e.setPassword(ctx, id, step.GetPassword())
	case agentv1.StepAction_STEP_ACTION_DECOMMISSION:
		return e.decommission(ctx, id, deadline)
	}
	return fmt.Errorf("action %s (operation kind %s): %w", action, step.GetKind(), errInvalidStep)
}

// domainSpec is the domain a step describes: its shape, and for the steps
// that define a domain or preflight one, its NICs and guest seed.
func domainSpec(step *agentv1.RunStep) (hypervisor.DomainSpec, error) {
	spec := step.GetSpec()
	vcpus, ok1 := unsigned[uint32](spec.GetVcpus())
	mem, ok2 := unsigned[uint64](spec.GetMemoryMib())
	disk, ok3 := unsigned[uint64](spec.GetDiskGib())
	if !ok1 || !ok2 || !ok3 {
		return hypervisor.DomainSpec{}, fmt.Errorf("negative size in spec %v: %w", spec, hypervisor.ErrInvalidSpec)
	}
	nics, err := nicsFromPB(step.GetNics())
	if err != nil {
		return hypervisor.DomainSpec{}, err
	}
	return hypervisor.DomainSpec{
		ID:        step.GetInstanceId(),
		Name:      step.GetName(),
		VCPUs:     vcpus,
		MemoryMiB: mem,
		DiskGiB:   disk,
		Image:     spec.GetImage(),
		NICs:      nics,
		Seed:      seedFromPB(step.GetGuest()),
	}, nil
}

// validSpec is domainSpec, checked: a step that defines a domain from it.
func validSpec(step *agentv1.RunStep) (hypervisor.DomainSpec, error) {
	spec, err := domainSpec(step)
	if err != nil {
		return spec, err
	}
	return spec, hypervisor.ValidateSpec(spec)
}

// LayerFromPB converts a disk layer of the agent protocol; an unknown value
// is an error (it would name a file this agent does not know).
func LayerFromPB(l agentv1.DiskLayer) (hypervisor.DiskLayer, error) {
	switch l {
	case agentv1.DiskLayer_DISK_LAYER_UNSPECIFIED:
		return hypervisor.DiskWhole, nil
	case agentv1.DiskLayer_DISK_LAYER_BASE:
		return hypervisor.DiskBase, nil
	case agentv1.DiskLayer_DISK_LAYER_MID:
		return hypervisor.DiskMid, nil
	case agentv1.DiskLayer_DISK_LAYER_TOP:
		return hypervisor.DiskTop, nil
	}
	return "", fmt.Errorf("unknown disk layer %d: %w", l, errInvalidStep)
}

// hostIDPattern is what a host id looks like (the coordinator's rule).
var hostIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// maxTokenBytes bounds an offer token: it is kept in memory and compared on
// every pull, and a real one is a few dozen bytes.
const maxTokenBytes = 1024

// checkPeer validates the peer fields of a disk step before anything acts
// on them; withAddr for IMPORT_DISK, which dials the peer.
func (e *Executor) checkPeer(step *agentv1.RunStep, withAddr bool) error {
	tok, peer := step.GetOfferToken(), step.GetPeerHostId()
	// An image needs no offer: any agent may pull the fleet's images.
	image := step.GetAction() == agentv1.StepAction_STEP_ACTION_FETCH_IMAGE
	switch {
	case tok == "" && !image:
		return fmt.Errorf("%s without an offer token: %w", step.GetAction(), errInvalidStep)
	case len(tok) > maxTokenBytes:
		return fmt.Errorf("%s offer token longer than %d bytes: %w", step.GetAction(), maxTokenBytes, errInvalidStep)
	case !hostIDPattern.MatchString(peer):
		return fmt.Errorf("%s peer host id %q is not a host id: %w", step.GetAction(), peer, errInvalidStep)
	case peer == e.cfg.HostID:
		return fmt.Errorf("%s names this host (%s) as its peer: %w", step.GetAction(), peer, errInvalidStep)
	}
	if !withAddr {
		return nil
	}
	addr := step.GetPeerAddress()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s peer address %q: want host:port: %v: %w", step.GetAction(), addr, err, errInvalidStep)
	}
	if p, perr := strconv.ParseUint(port, 10, 16); host == "" || perr != nil || p == 0 {
		return fmt.Errorf("%s peer address %q: want host:port with a host and a port in 1..65535: %w", step.GetAction(), addr, errInvalidStep)
	}
	return nil
}

// unsigned converts a spec size to the driver's unsigned type; false if it
// is negative. Generic because the proto's signedness is not the driver's.
func unsigned[U uint32 | uint64, S int32 | int64 | uint32 | uint64](v S) (U, bool) {
	if v < 0 {
		return 0, false
	}
	return U(v), true
}

var (
	// errInvalidStep: the step itself makes no sense here; never retried.
	errInvalidStep = errors.New("invalid step")
	errNoMover     = fmt.Errorf("this agent does not move disks: %w", errInvalidStep)
)

// invalidDisk marks a Mover's refusal of the pulled disk (the spec itself
// was checked before the pull), keeping the Mover's message as it is.
type invalidDisk struct{ err error }

func (e invalidDisk) Error() string { return e.err.Error() }
func (e invalidDisk) Unwrap() error { return e.err }

// faultCode classifies a driver or Mover error.
func faultCode(err error) string {
	var disk invalidDisk
	switch {
	case errors.Is(err, errInvalidStep):
		return FaultInvalidStep
	case errors.As(err, &disk):
		return FaultInvalidDisk
	case errors.Is(err, ErrPeerUnavailable):
		return FaultPeerUnavailable
	case errors.Is(err, ErrDiskCorrupt):
		return FaultDiskCorrupt
	case errors.Is(err, ErrPeerRefused):
		return FaultPeerRefused
	case errors.Is(err, hypervisor.ErrInvalidSpec):
		return FaultInvalidSpec
	case errors.Is(err, hypervisor.ErrImageNotFound):
		return FaultImageNotFound
	case errors.Is(err, hypervisor.ErrInsufficientDisk):
		return FaultInsufficientDisk
	case errors.Is(err, hypervisor.ErrNetworkUnavailable):
		return FaultNetworkUnavailable
	case errors.Is(err, hypervisor.ErrInvalidState):
		return FaultInvalidState
	case errors.Is(err, hypervisor.ErrNotFound):
		return FaultDomainNotFound
	case errors.Is(err, hypervisor.ErrUnavailable):
		return FaultHypervisorUnavailable
	case errors.Is(err, guestchan.ErrNoGuestSide):
		return FaultGuestUnsupported
	case errors.As(err, new(errUnhealthy)):
		return FaultGuestFailed
	case errors.As(err, new(*guestchan.CommandError)), errors.Is(err, guestchan.ErrBadCommand):
		return FaultGuestFailed
	case errors.Is(err, guestchan.ErrChannelClosed):
		return FaultGuestUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return FaultDeadlineExceeded
	}
	return FaultHypervisorError
}

// record journals a final result under the step's key. A result that
// cannot be journaled is still returned: the coordinator should hear how the
// step ended, and a re-send then finds the "started" record and reports an
// interruption.
func (e *Executor) record(log *slog.Logger, key string, res *agentv1.StepResult) *agentv1.StepResult {
	if err := e.cfg.Store.Finish(key, res); err != nil {
		log.Error("recording the step's result failed", "err", err)
	}
	return res
}

func (e *Executor) fail(step *agentv1.RunStep, code, msg string, state *agentv1.DomainState) *agentv1.StepResult {
	return &agentv1.StepResult{
		OperationId: step.GetOperationId(),
		StepId:      step.GetStepId(),
		HostEpoch:   step.GetHostEpoch(),
		Fault: &flotillav1.Fault{
			Code:    code,
			Message: msg,
			Time:    timestamppb.New(time.Now()),
			HostId:  e.cfg.HostID,
		},
		State: state,
	}
}

// status reads the domain's state after a step; nil if the driver cannot say.
func (e *Executor) status(id string) *agentv1.DomainState {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, err := e.cfg.Driver.Status(ctx, id)
	if err != nil {
		e.log.Warn("reading the domain's state after the step failed", "instance", id, "err", err)
		return nil
	}
	return DomainState(st)
}

// lockInstance waits for the instance's lock until ctx ends.
func (e *Executor) lockInstance(ctx context.Context, id string) (func(), error) {
	e.mu.Lock()
	l := e.instLocks[id]
	if l == nil {
		l = &instanceLock{sem: make(chan struct{}, 1)}
		e.instLocks[id] = l
	}
	l.refs++
	e.mu.Unlock()

	release := func() {
		e.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(e.instLocks, id)
		}
		e.mu.Unlock()
	}
	select {
	case l.sem <- struct{}{}:
		return func() { <-l.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// DomainState converts a driver observation to the protocol's form. An
// undated observation is dated now: the coordinator drops observations older
// than the one it has, and an undated one would always lose.
func DomainState(st hypervisor.DomainStatus) *agentv1.DomainState {
	at := st.ObservedAt
	if at.IsZero() {
		at = time.Now()
	}
	return &agentv1.DomainState{
		InstanceId: st.ID,
		State:      PowerState(st.State),
		Reason:     st.Reason,
		ObservedAt: timestamppb.New(at),
	}
}

// PowerState converts the driver's power state to the protocol's.
func PowerState(p hypervisor.PowerState) flotillav1.PowerState {
	switch p {
	case hypervisor.PowerRunning:
		return flotillav1.PowerState_POWER_STATE_RUNNING
	case hypervisor.PowerPaused:
		return flotillav1.PowerState_POWER_STATE_PAUSED
	case hypervisor.PowerShuttingDown:
		return flotillav1.PowerState_POWER_STATE_SHUTTING_DOWN
	case hypervisor.PowerShutOff:
		return flotillav1.PowerState_POWER_STATE_SHUT_OFF
	case hypervisor.PowerCrashed:
		return flotillav1.PowerState_POWER_STATE_CRASHED
	case hypervisor.PowerSavedToDisk:
		return flotillav1.PowerState_POWER_STATE_SAVED_TO_DISK
	case hypervisor.PowerNoDomain:
		return flotillav1.PowerState_POWER_STATE_NO_DOMAIN
	}
	return flotillav1.PowerState_POWER_STATE_UNKNOWN
}

// setPassword has the guest set a user's password: "CMD <n> password
// <user> <hex of the password>" on its guest channel. The password is in
// no log line, journal record or fault: the step's errors come from
// checks that never quote it and from a Guests that never does.
func (e *Executor) setPassword(ctx context.Context, id string, p *agentv1.GuestPassword) error {
	if e.cfg.Guests == nil {
		return fmt.Errorf("this agent runs no guest channels: %w", guestchan.ErrNoGuestSide)
	}
	if !hypervisor.ValidGuestUser(p.GetUser()) {
		return fmt.Errorf("set password: user %q: %w", p.GetUser(), errInvalidStep)
	}
	if err := hypervisor.CheckGuestPassword(p.GetPassword()); err != nil {
		return fmt.Errorf("set password: %w: %w", err, errInvalidStep)
	}
	_, err := e.cfg.Guests.Command(ctx, id, "password", p.GetUser(), hex.EncodeToString([]byte(p.GetPassword())))
	return err
}
