// Package service is what the coordinator does when asked to change
// something: it checks a request against the current state, builds the
// command and commits it through the log. It speaks domain types only; the
// public API (coordinator/api) validates the wire form, calls it and maps
// its errors to gRPC codes.
package service

import (
	"context"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placer"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Applier commits an encoded command (the raft store, on the leader).
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Config wires the service to the store and the log.
type Config struct {
	Store   *state.Store
	Applier Applier
	// Policy is how instances are placed (spread or pack, overcommit).
	Policy scheduler.Policy
	// Deadlines override lifecycle.DefaultDeadlines per operation kind.
	Deadlines map[lifecycle.OpKind]time.Duration
	// ReadinessTimeout is a create's readiness deadline when it gives none.
	ReadinessTimeout time.Duration
	// Secrets holds SetPassword's passwords for the orchestrator, in
	// memory only; nil refuses SetPassword.
	Secrets *secrets.Store
	// SoftDeleteRetention is the cluster's retention window: with one, a
	// delete keeps the instance SOFT_DELETED and restorable for that long
	// (0: a delete deletes).
	SoftDeleteRetention time.Duration
	Now                 func() time.Time // defaults to time.Now
}

// Service carries out the writes users ask for.
type Service struct {
	policy    scheduler.Policy
	placer    *placer.Placer // new instances' hosts
	deadlines map[lifecycle.OpKind]time.Duration
	store     *state.Store
	raft      Applier
	now       func() time.Time
	readiness time.Duration
	secrets   *secrets.Store
	softDel   time.Duration
}

// New returns a service over cfg's store and log.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{policy: cfg.Policy, placer: placer.New(cfg.Store, cfg.Policy), deadlines: cfg.Deadlines, store: cfg.Store, raft: cfg.Applier, now: cfg.Now, readiness: cfg.ReadinessTimeout,
		secrets: cfg.Secrets, softDel: cfg.SoftDeleteRetention}
}

// FieldError is a request field the current state refuses, such as a
// resize that would shrink the disk: the API reports it as a bad field.
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + " " + e.Reason }

// deadline is how long an operation of kind k may take.
func (s *Service) deadline(k lifecycle.OpKind) time.Duration {
	if d, ok := s.deadlines[k]; ok {
		return d
	}
	return lifecycle.DefaultDeadlines[k]
}

// apply encodes and commits a command.
func (s *Service) apply(ctx context.Context, typ string, body any) (any, error) {
	return fsm.Propose(ctx, s.raft, typ, s.now(), body)
}
