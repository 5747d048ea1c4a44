package api

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/authz"
)

// Project scope: an operator or viewer sees and acts on the instances (and
// their operations and usage) of the projects its certificate names
// (authz.Principal.Sees); to it, another project's instance does not
// exist (NOT_FOUND, as for an id never used), so ids cannot be probed.

// sees reports whether the caller may see project's instances. A call the
// authorization interceptor did not admit (this package's in-process
// tests, which serve without one) sees every project.
func sees(ctx context.Context, project string) bool {
	p, ok := authz.FromContext(ctx)
	return !ok || p.Sees(project)
}

// seesAll reports whether the caller sees every project's instances.
func seesAll(ctx context.Context) bool {
	p, ok := authz.FromContext(ctx)
	return !ok || !p.Verified || p.Has(authz.Admin)
}

// seesInstance reports whether the caller may see an instance record.
func seesInstance(ctx context.Context, i *state.Instance) bool { return sees(ctx, state.ProjectOf(i)) }

// checkInstance refuses, as NOT_FOUND, an instance of a project the
// caller does not see; one that does not exist is left to the call.
func (c *core) checkInstance(ctx context.Context, id string) error {
	i, err := c.store.Instance(id)
	if err != nil || seesInstance(ctx, &i) {
		return nil
	}
	return fmt.Errorf("instance %q: %w", id, state.ErrNotFound)
}

// checkOperation refuses, as NOT_FOUND, an operation of an instance the
// caller does not see (or of one already forgotten, unless it sees every
// project).
func (c *core) checkOperation(ctx context.Context, opID string) error {
	op, err := c.store.Operation(opID)
	if err != nil {
		return nil
	}
	if !c.seesOperation(ctx, &op) {
		return fmt.Errorf("operation %q: %w", opID, state.ErrNotFound)
	}
	return nil
}

func (c *core) seesOperation(ctx context.Context, op *state.Operation) bool {
	i, err := c.store.Instance(op.InstanceID)
	if err != nil {
		p, ok := authz.FromContext(ctx)
		return !ok || !p.Verified || p.Has(authz.Admin)
	}
	return seesInstance(ctx, &i)
}
