package executor

import "context"

// stepCtxKey carries the running step's identity in the context the executor
// hands to the driver and the Mover, so that what they report while the
// step runs (a copy's progress) can name the step.
type stepCtxKey struct{}

// StepIdentity is the step a context belongs to.
type StepIdentity struct {
	OperationID, StepID, InstanceID string
}

func withStep(ctx context.Context, id StepIdentity) context.Context {
	return context.WithValue(ctx, stepCtxKey{}, id)
}

// StepFromContext returns the identity of the step whose call ctx is (or
// descends from), if any.
func StepFromContext(ctx context.Context) (StepIdentity, bool) {
	id, ok := ctx.Value(stepCtxKey{}).(StepIdentity)
	return id, ok
}
