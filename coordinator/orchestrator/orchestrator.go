// Package orchestrator drives operations on the leader: it sends each open
// operation's current step to its host's agent (once per agent session: the
// agent runs a step id at most once and keeps its result), asks an agent
// what became of a step the previous leader or session had sent before
// deciding anything about it, starts retries when their back-off has passed,
// and ends every step and operation whose deadline has passed, so no
// instance stays in a transitional status forever. What a result means is
// decided by the FSM, on every replica alike.
package orchestrator

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// Sessions is the orchestrator's view of live agent sessions.
type Sessions interface {
	Epoch(hostID string) (uint64, bool)
	Send(hostID string, step *agentv1.RunStep) error
	// Query asks what became of a step; answers come to StepReport.
	Query(hostID string, q *agentv1.QueryStep) error
	Changed() <-chan struct{}
}

// Applier commits an encoded command through the replicated log.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Config configures the orchestrator.
type Config struct {
	Store    *state.Store
	Applier  Applier
	Sessions Sessions
	Logger   *slog.Logger
	Now      func() time.Time
	// Grace is how long past an operation's deadline the coordinator waits
	// for the agent's own verdict before ending it as DEADLINE_EXCEEDED.
	Grace time.Duration
	Tick  time.Duration
	// Policy places waiting instances, as the API places new ones.
	Policy scheduler.Policy
	// Secrets holds SetPassword's passwords (nil: none; such a step then
	// fails PASSWORD_LOST).
	Secrets *secrets.Store
	// Images sends the image catalogue's tasks to agents (nil: none are sent).
	Images ImageTasks
}

// Orchestrator is the leader's operation driver.
type Orchestrator struct {
	cfg  Config
	log  *slog.Logger
	sent map[string]uint64 // step id -> session epoch it was sent (or found running) on
	// asked maps a step recorded as running, but not sent by this leader on
	// the host's current session, to when and on which epoch it was queried.
	asked   map[string]query
	reports *reports // agents' answers to those queries
	// evicting maps a waiting instance to the evictions started for it, so
	// it does not evict again while they run.
	evicting map[string][]string
	// waitSeen is the store revision up to which waiting instances have
	// been tried; retryWaiting asks for all of them to be tried again.
	waitSeen     int64
	retryWaiting bool
	// confirmScan is when unconfirmed resizes were last looked at.
	confirmScan time.Time
	// imagesSent maps an image task (image and host) to when it was sent.
	imagesSent map[string]imageSent
	// rng draws the hosts a placement ranks (see choose).
	rng *rand.Rand
}

// New returns an orchestrator.
func New(cfg Config) *Orchestrator {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.Tick == 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	return &Orchestrator{cfg: cfg, log: cfg.Logger, reports: newReports(), rng: rand.New(rand.NewPCG(uint64(cfg.Now().UnixNano()), 0x0c4e))}
}

// Run drives operations until ctx ends. Call it only while leader.
func (o *Orchestrator) Run(ctx context.Context) {
	o.sent = map[string]uint64{}
	o.asked = map[string]query{}
	o.evicting = map[string][]string{}
	o.imagesSent = map[string]imageSent{}
	o.waitSeen, o.retryWaiting = 0, true
	t := time.NewTicker(o.cfg.Tick)
	defer t.Stop()
	for {
		stateChanged, sessionsChanged := o.cfg.Store.Changed(), o.cfg.Sessions.Changed()
		o.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-stateChanged:
		case <-sessionsChanged:
		case <-t.C:
		case <-o.reports.wake:
		}
		// Coalesce a burst of commits into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(passGap):
		}
	}
}

// passGap is the least time between two passes: a burst of commits is
// served by one pass (and one dispatch entry) rather than one each.
const passGap = 10 * time.Millisecond

func (o *Orchestrator) pass(ctx context.Context) {
	now := o.cfg.Now()
	open := o.cfg.Store.HostedOperations()
	o.place(ctx, now)
	o.drive(ctx, open, now)
	o.imageTasks(now)
	if now.Sub(o.confirmScan) >= confirmEvery {
		o.confirmScan = now
		o.confirmDue(ctx, now)
	}
}

func (o *Orchestrator) apply(ctx context.Context, typ string, body any) error {
	_, err := o.applyValue(ctx, typ, body)
	return err
}
