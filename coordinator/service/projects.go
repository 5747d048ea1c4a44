package service

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// needProjects refuses project commands before every server reads them.
func (s *Service) needProjects() error {
	if v := s.store.LogVersion(); v < fsm.LogVersion7 {
		return fmt.Errorf("projects: %w (needs log version %d, the cluster is at %d)", fsm.ErrUnsupported, fsm.LogVersion7, v)
	}
	return nil
}

// PutProject creates a project (create) or replaces its quota, prices and billing.
func (s *Service) PutProject(ctx context.Context, p state.Project, create bool) (state.Project, error) {
	if err := s.needProjects(); err != nil {
		return state.Project{}, err
	}
	if _, err := s.apply(ctx, fsm.TypePutProject, fsm.PutProject{Project: p, Create: create}); err != nil {
		return state.Project{}, err
	}
	return s.store.Project(p.Name)
}

// TopUp adds to a project's balance, then brings its instances in line
// (a top-up that ends a balance's freeze resumes what the freeze paused).
func (s *Service) TopUp(ctx context.Context, name string, amountMilli int64) (state.Project, error) {
	if err := s.needProjects(); err != nil {
		return state.Project{}, err
	}
	if _, err := s.apply(ctx, fsm.TypeTopUpProject, fsm.TopUpProject{Name: name, AmountMilli: amountMilli}); err != nil {
		return state.Project{}, err
	}
	return s.syncProject(ctx, name, false, false)
}

// Freeze sets (freeze) or lifts an admin's freeze of a project, pausing or
// unpausing its instances.
func (s *Service) Freeze(ctx context.Context, name string, freeze bool) (state.Project, error) {
	if err := s.needProjects(); err != nil {
		return state.Project{}, err
	}
	return s.syncProject(ctx, name, true, freeze)
}

// SyncProject brings a project's instances in line with its frozen state:
// the leader calls it when a charge froze a project, or when an instance
// of a frozen project still runs (its operation ended after the freeze).
func (s *Service) SyncProject(ctx context.Context, name string) (state.Project, error) {
	return s.syncProject(ctx, name, false, false)
}

func (s *Service) syncProject(ctx context.Context, name string, admin, freeze bool) (state.Project, error) {
	cmd := fsm.FreezeProject{Name: name, Admin: admin, Freeze: freeze}
	now := s.now()
	instances, _ := s.store.Instances()
	for k := range instances {
		i := &instances[k]
		if state.ProjectOf(i) != name || i.Desired == lifecycle.DesiredDeleted || i.CurrentOp != "" {
			continue
		}
		// Every idle instance gets an operation ready; the commit decides
		// which, if any, to start (a pause or an unpause).
		cmd.Ops = append(cmd.Ops, state.Operation{ID: ids.New("op-"), InstanceID: i.ID,
			Deadline: now.Add(max(s.deadline(lifecycle.OpPause), s.deadline(lifecycle.OpUnpause)))})
	}
	if _, err := s.apply(ctx, fsm.TypeFreezeProject, cmd); err != nil {
		return state.Project{}, err
	}
	return s.store.Project(name)
}
