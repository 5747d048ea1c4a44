// Package executor runs the coordinator's steps against the hypervisor
// driver, each operation at most once, one step per instance at a time.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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
)

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
	running   map[string]bool          // operation ids running in this process
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

// Execute runs the step unless its operation has run or is running, and
// returns its result; it blocks until the step ends. sessionEpoch is the
// host epoch of the session the step arrived on.
//
// It returns nil when the operation is already running in this process: the
// call that started it returns the result. A finished operation's recorded
// result is returned again without touching the driver.
func (e *Executor) Execute(step *agentv1.RunStep, sessionEpoch uint64) *agentv1.StepResult {
	opID := step.GetOperationId()
	log := e.log.With("operation", opID, "instance", step.GetInstanceId(), "kind", step.GetKind().String())

	if opID == "" || step.GetInstanceId() == "" {
		// Nothing can be recorded without an id; the coordinator never sends this.
		return e.fail(step, FaultInvalidStep, "step without operation or instance id", nil)
	}

	e.mu.Lock()
	if e.running[opID] {
		e.mu.Unlock()
		log.Debug("step already running; its result will be sent when done")
		return nil
	}
	if e.life.Err() != nil {
		e.mu.Unlock()
		return nil // shutting down: the step is re-sent to the next agent process
	}
	rec, err := e.cfg.Store.Get(opID)
	if err != nil {
		e.mu.Unlock()
		log.Error("reading the step journal failed", "err", err)
		return e.fail(step, FaultAgentError, err.Error(), nil)
	}
	switch rec.State {
	case stepstore.Finished:
		e.mu.Unlock()
		log.Debug("step already finished; sending its result again")
		return rec.Result
	case stepstore.Started:
		// Recorded as started, not running here: this process was not the
		// one that started it. The driver may or may not have acted, so the
		// step is not re-run; the coordinator decides from the state.
		e.running[opID] = true
		e.wg.Add(1)
		e.mu.Unlock()
		defer e.done(opID)
		log.Warn("step was interrupted by an agent restart; not re-running it")
		res := e.fail(step, FaultAgentRestarted,
			fmt.Sprintf("the step was interrupted: the agent restarted while running %s (started %s); the domain's state is attached",
				rec.Kind, rec.StartTime.Format(time.RFC3339)),
			e.status(step.GetInstanceId()))
		return e.record(log, res)
	}
	if step.GetHostEpoch() != sessionEpoch {
		e.mu.Unlock()
		// Not recorded: nothing ran, and the step may come again under the
		// right epoch.
		log.Warn("refusing step of a stale epoch", "step_epoch", step.GetHostEpoch(), "epoch", sessionEpoch)
		return e.fail(step, FaultStaleEpoch,
			fmt.Sprintf("step issued under host epoch %d, the session's epoch is %d", step.GetHostEpoch(), sessionEpoch), nil)
	}
	e.running[opID] = true
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.done(opID)
	return e.run(log, step)
}

func (e *Executor) done(opID string) {
	e.mu.Lock()
	delete(e.running, opID)
	e.mu.Unlock()
	e.wg.Done()
}

// run runs a new step under its deadline and the instance's lock.
func (e *Executor) run(log *slog.Logger, step *agentv1.RunStep) *agentv1.StepResult {
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
		return e.record(log, e.fail(step, FaultDeadlineExceeded,
			fmt.Sprintf("waiting for another step on instance %s: %v", id, err), e.status(id)))
	}
	defer unlock()
	if ctx.Err() != nil {
		// The lock and the deadline were both ready; do not start late.
		if e.life.Err() != nil {
			return nil
		}
		return e.record(log, e.fail(step, FaultDeadlineExceeded,
			fmt.Sprintf("step deadline %s passed before it could start", deadline.Format(time.RFC3339)), e.status(id)))
	}

	if _, fresh, err := e.cfg.Store.Begin(step.GetOperationId(), stepstore.Step{
		Kind: step.GetKind(), InstanceID: id, HostEpoch: step.GetHostEpoch(),
	}); err != nil {
		// Without the "started" record the at-most-once promise cannot be
		// kept across a restart, so the driver is not called.
		log.Error("recording the step's start failed", "err", err)
		return e.fail(step, FaultAgentError, err.Error(), e.status(id))
	} else if !fresh {
		// Only this process writes the journal and it runs each operation
		// once; reaching here means the journal changed under it.
		return e.fail(step, FaultAgentError, "step already recorded in the journal", e.status(id))
	}

	log.Info("running step", "deadline", deadline)
	start := time.Now()
	err = e.call(ctx, step)
	if err != nil && e.life.Err() != nil {
		// The agent is shutting down mid-step. The record stays "started":
		// the next process reports the step as interrupted.
		log.Warn("step abandoned by agent shutdown", "err", err)
		return nil
	}
	if err != nil {
		code := faultCode(err)
		log.Warn("step failed", "fault", code, "err", err, "took", time.Now().Sub(start))
		return e.record(log, e.fail(step, code, err.Error(), e.status(id)))
	}
	log.Info("step succeeded", "took", time.Now().Sub(start))
	return e.record(log, &agentv1.StepResult{
		OperationId: step.GetOperationId(),
		HostEpoch:   step.GetHostEpoch(),
		Succeeded:   true,
		State:       e.status(id),
	})
}

// call maps the step's kind to the driver method.
func (e *Executor) call(ctx context.Context, step *agentv1.RunStep) error {
	d, id := e.cfg.Driver, step.GetInstanceId()
	switch step.GetKind() {
	case flotillav1.OperationKind_OPERATION_KIND_CREATE:
		spec := step.GetSpec()
		vcpus, ok1 := unsigned[uint32](spec.GetVcpus())
		mem, ok2 := unsigned[uint64](spec.GetMemoryMib())
		disk, ok3 := unsigned[uint64](spec.GetDiskGib())
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("negative size in spec %v: %w", spec, hypervisor.ErrInvalidSpec)
		}
		return d.Create(ctx, hypervisor.DomainSpec{
			ID:        id,
			Name:      step.GetName(),
			VCPUs:     vcpus,
			MemoryMiB: mem,
			DiskGiB:   disk,
			Image:     spec.GetImage(),
		})
	case flotillav1.OperationKind_OPERATION_KIND_START, flotillav1.OperationKind_OPERATION_KIND_RESUME:
		// Start restores from the managed save image when there is one.
		return d.Start(ctx, id)
	case flotillav1.OperationKind_OPERATION_KIND_STOP:
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
	case flotillav1.OperationKind_OPERATION_KIND_RESTART:
		return d.Reboot(ctx, id, false)
	case flotillav1.OperationKind_OPERATION_KIND_HARD_RESTART:
		return d.Reboot(ctx, id, true)
	case flotillav1.OperationKind_OPERATION_KIND_PAUSE:
		return d.Pause(ctx, id)
	case flotillav1.OperationKind_OPERATION_KIND_UNPAUSE:
		return d.Resume(ctx, id)
	case flotillav1.OperationKind_OPERATION_KIND_SUSPEND:
		return d.Save(ctx, id)
	case flotillav1.OperationKind_OPERATION_KIND_DELETE:
		return d.Delete(ctx, id)
	}
	return fmt.Errorf("operation kind %s: %w", step.GetKind(), errUnknownKind)
}

// unsigned converts a spec size to the driver's unsigned type; false if it
// is negative. Generic because the proto's signedness is not the driver's.
func unsigned[U uint32 | uint64, S int32 | int64 | uint32 | uint64](v S) (U, bool) {
	if v < 0 {
		return 0, false
	}
	return U(v), true
}

var errUnknownKind = errors.New("unknown operation kind")

// faultCode classifies a driver error.
func faultCode(err error) string {
	switch {
	case errors.Is(err, errUnknownKind):
		return FaultInvalidStep
	case errors.Is(err, hypervisor.ErrInvalidSpec):
		return FaultInvalidSpec
	case errors.Is(err, hypervisor.ErrImageNotFound):
		return FaultImageNotFound
	case errors.Is(err, hypervisor.ErrInvalidState):
		return FaultInvalidState
	case errors.Is(err, hypervisor.ErrNotFound):
		return FaultDomainNotFound
	case errors.Is(err, hypervisor.ErrUnavailable):
		return FaultHypervisorUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return FaultDeadlineExceeded
	}
	return FaultHypervisorError
}

// record journals a final result. A result that cannot be journaled is
// still returned: the coordinator should hear how the step ended, and a
// re-send then finds the "started" record and reports an interruption.
func (e *Executor) record(log *slog.Logger, res *agentv1.StepResult) *agentv1.StepResult {
	if err := e.cfg.Store.Finish(res.GetOperationId(), res); err != nil {
		log.Error("recording the step's result failed", "err", err)
	}
	return res
}

func (e *Executor) fail(step *agentv1.RunStep, code, msg string, state *agentv1.DomainState) *agentv1.StepResult {
	return &agentv1.StepResult{
		OperationId: step.GetOperationId(),
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
